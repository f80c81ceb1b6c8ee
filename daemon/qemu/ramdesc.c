// SPDX-License-Identifier: GPL-2.0-only
/*
 * The "qemu-ram" section of a VM generation: the guest's RAM backends as
 * JSON, so that restore and export can find each backend's pages (its
 * mapping in the checkpointed QEMU) by id and check the QEMU they go into:
 *   {"qemu_version":70200,"backends":[{"id":"ram0","type":"memory-backend-memfd",
 *     "size":268435456,"start":140000000000,"share":true,"mem_path":""}]}
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qemu/checkpoint.h"

#define RAMDESC_MAX (64u << 10)

int qemu_ram_encode(const struct qemu_ram *ram, unsigned qemu_version, char **ret, size_t *len)
{
	json_object *o = json_object_new_object(), *list = json_object_new_array();
	int r = 0;

	if (!o || !list) {
		json_object_put(o);
		json_object_put(list);
		return -ENOMEM;
	}
	json_object_object_add(o, "qemu_version", json_object_new_int64(qemu_version));
	for (size_t i = 0; i < ram->n; i++) {
		const struct qemu_backend *b = &ram->b[i];
		json_object *e = json_object_new_object();

		json_object_object_add(e, "id", json_object_new_string(b->id));
		json_object_object_add(e, "type", json_object_new_string(qemu_backend_kind_name(b->kind)));
		json_object_object_add(e, "size", json_object_new_uint64(b->size));
		json_object_object_add(e, "start", json_object_new_uint64(b->start));
		json_object_object_add(e, "share", json_object_new_boolean(b->share));
		json_object_object_add(e, "mem_path", json_object_new_string(b->mem_path));
		json_object_array_add(list, e);
	}
	json_object_object_add(o, "backends", list);
	*ret = strdup(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
	if (!*ret)
		r = -ENOMEM;
	else
		*len = strlen(*ret);
	json_object_put(o);
	return r;
}

static uint64_t member_u64(json_object *o, const char *key, bool *ok)
{
	json_object *v;

	if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_int)) {
		*ok = false;
		return 0;
	}
	return json_object_get_uint64(v);
}

static int decode_backend(json_object *e, struct qemu_backend *b)
{
	const char *id = qmp_str(e, "id"), *type = qmp_str(e, "type"), *path = qmp_str(e, "mem_path");
	json_object *share;
	bool ok = true;

	*b = (struct qemu_backend){ 0 };
	if (!id || !id[0] || strlen(id) >= sizeof(b->id) || !type)
		return -EBADMSG;
	strcpy(b->id, id);
	snprintf(b->type, sizeof(b->type), "%s", type);
	snprintf(b->mem_path, sizeof(b->mem_path), "%s", path ? path : "");
	b->kind = !strcmp(type, "memory-backend-file")	? QEMU_BACKEND_FILE
		  : !strcmp(type, "memory-backend-memfd") ? QEMU_BACKEND_MEMFD
							   : QEMU_BACKEND_OTHER;
	b->size = member_u64(e, "size", &ok);
	b->start = member_u64(e, "start", &ok);
	b->share = json_object_object_get_ex(e, "share", &share) && json_object_get_boolean(share);
	if (!ok || !b->size || b->size % 4096 || b->start % 4096 || b->start + b->size < b->start)
		return -EBADMSG;
	b->end = b->start + b->size;
	return 0;
}

int qemu_ram_decode(const void *buf, size_t len, struct qemu_ram *ram)
{
	json_tokener *tok;
	json_object *o, *list;
	int r = 0;

	*ram = (struct qemu_ram){ 0 };
	if (len == 0 || len > RAMDESC_MAX)
		return -EBADMSG;
	tok = json_tokener_new();
	if (!tok)
		return -ENOMEM;
	o = json_tokener_parse_ex(tok, buf, (int)len);
	json_tokener_free(tok);
	if (!o || !json_object_object_get_ex(o, "backends", &list) ||
	    !json_object_is_type(list, json_type_array) || json_object_array_length(list) == 0 ||
	    json_object_array_length(list) > QEMU_MAX_BACKENDS)
		r = -EBADMSG;
	for (size_t i = 0; r == 0 && i < json_object_array_length(list); i++)
		r = decode_backend(json_object_array_get_idx(list, i), &ram->b[ram->n++]);
	json_object_put(o);
	return r;
}
