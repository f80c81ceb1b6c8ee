// SPDX-License-Identifier: GPL-2.0-only
/* Progress line, JSON from protobuf descriptors, sizes. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "ctl.h"

const char *fmt_bytes(uint64_t n, char *buf, size_t len)
{
	static const char *const unit[] = { "B", "KiB", "MiB", "GiB", "TiB" };
	double v = (double)n;
	int u = 0;

	while (v >= 1024 && u < 4) {
		v /= 1024;
		u++;
	}
	snprintf(buf, len, u ? "%.1f %s" : "%.0f %s", v, unit[u]);
	return buf;
}

/* The per-pass table of a generation (checkpoint --passes). */
void print_passes(Wpmig__PassInfo *const *rows, size_t n)
{
	char b[32];

	printf("  pass kind           found       data       zero      bytes   scan ms   copy ms"
	       "  store ms  pause ms\n");
	for (size_t i = 0; i < n; i++) {
		const Wpmig__PassInfo *r = rows[i];

		printf("  %4u %-6s %12" PRIu64 " %10" PRIu64 " %10" PRIu64 " %10s %9.2f %9.2f",
		       r->seq, r->final ? "frozen" : r->held ? "live*" : "live", r->found,
		       r->data_pages, r->zero_pages, fmt_bytes(r->bytes, b, sizeof(b)), r->scan_ms,
		       r->copy_ms);
		if (r->final || r->held)
			printf(" %9.2f", r->store_ms);
		else
			printf(" %9s", "-");
		if (r->final)
			printf(" %9.2f\n", r->pause_ms);
		else
			printf(" %9s\n", "-");
	}
	printf("  (live*: copied out live, stored after the thaw; frozen: the pass taken with "
	       "the process stopped)\n");
}

/* Terminal: one line redrawn with \r.  Otherwise: a line per phase. */
void progress_show(struct ctl *c, const Wpmig__Progress *p)
{
	double mbs = p->rate / 1e6;

	if (p->expect_ms > 0) { /* a migration's pass: one line each */
		if (c->tty)
			fprintf(stderr, "\r\033[K");
		fprintf(stderr, "%s: %" PRIu64 " pages, %.1f MB sent, dirty %.0f pages/s, link "
			"%.1f MB/s, expected downtime %.0f ms\n", p->phase, p->done,
			(double)p->bytes / 1e6, p->dirty_rate, mbs, p->expect_ms);
		return;
	}
	if (!c->tty) {
		if (strcmp(c->last_phase, p->phase))
			fprintf(stderr, "%s...\n", p->phase);
		snprintf(c->last_phase, sizeof(c->last_phase), "%s", p->phase);
		return;
	}
	fprintf(stderr, "\r\033[K%s: %" PRIu64, p->phase, p->done);
	if (p->total) {
		fprintf(stderr, "/%" PRIu64 " pages (%.0f%%)", p->total,
			100.0 * (double)p->done / (double)p->total);
	} else {
		fprintf(stderr, " pages");
	}
	fprintf(stderr, "  %.1f MB/s", mbs);
	if (p->total > p->done && p->done && p->rate > 0) {
		double page_rate = p->rate * (double)p->done / (double)(p->bytes ? p->bytes : 1);
		double eta = page_rate > 0 ? (double)(p->total - p->done) / page_rate : 0;
		fprintf(stderr, "  ETA %.0fs", eta);
	}
	c->progress_shown = true;
}

void progress_clear(struct ctl *c)
{
	if (c->tty && c->progress_shown)
		fprintf(stderr, "\r\033[K");
	c->progress_shown = false;
}

static struct json_object *scalar_to_json(const ProtobufCFieldDescriptor *f, const void *p)
{
	switch (f->type) {
	case PROTOBUF_C_TYPE_INT32:
	case PROTOBUF_C_TYPE_SINT32:
	case PROTOBUF_C_TYPE_SFIXED32:
		return json_object_new_int(*(const int32_t *)p);
	case PROTOBUF_C_TYPE_UINT32:
	case PROTOBUF_C_TYPE_FIXED32:
		return json_object_new_int64(*(const uint32_t *)p);
	case PROTOBUF_C_TYPE_INT64:
	case PROTOBUF_C_TYPE_SINT64:
	case PROTOBUF_C_TYPE_SFIXED64:
		return json_object_new_int64(*(const int64_t *)p);
	case PROTOBUF_C_TYPE_UINT64:
	case PROTOBUF_C_TYPE_FIXED64:
		return json_object_new_uint64(*(const uint64_t *)p);
	case PROTOBUF_C_TYPE_BOOL:
		return json_object_new_boolean(*(const protobuf_c_boolean *)p);
	case PROTOBUF_C_TYPE_DOUBLE:
		return json_object_new_double(*(const double *)p);
	case PROTOBUF_C_TYPE_FLOAT:
		return json_object_new_double(*(const float *)p);
	case PROTOBUF_C_TYPE_ENUM: {
		const ProtobufCEnumValue *v = protobuf_c_enum_descriptor_get_value(
			f->descriptor, *(const int *)p);
		return v ? json_object_new_string(v->name) : json_object_new_int(*(const int *)p);
	}
	case PROTOBUF_C_TYPE_STRING:
		return json_object_new_string(*(char *const *)p ? *(char *const *)p : "");
	case PROTOBUF_C_TYPE_MESSAGE:
		return *(ProtobufCMessage *const *)p ? pb_to_json(*(ProtobufCMessage *const *)p)
						      : NULL;
	default:
		return NULL; /* bytes: not in results */
	}
}

static size_t field_size(const ProtobufCFieldDescriptor *f)
{
	switch (f->type) {
	case PROTOBUF_C_TYPE_INT64: case PROTOBUF_C_TYPE_SINT64: case PROTOBUF_C_TYPE_SFIXED64:
	case PROTOBUF_C_TYPE_UINT64: case PROTOBUF_C_TYPE_FIXED64: case PROTOBUF_C_TYPE_DOUBLE:
		return 8;
	case PROTOBUF_C_TYPE_STRING: case PROTOBUF_C_TYPE_MESSAGE: case PROTOBUF_C_TYPE_BYTES:
		return sizeof(void *);
	case PROTOBUF_C_TYPE_BOOL:
		return sizeof(protobuf_c_boolean);
	default:
		return 4;
	}
}

struct json_object *pb_to_json(const ProtobufCMessage *m)
{
	const ProtobufCMessageDescriptor *d = m->descriptor;
	struct json_object *o = json_object_new_object();

	for (unsigned i = 0; i < d->n_fields; i++) {
		const ProtobufCFieldDescriptor *f = &d->fields[i];
		const char *base = (const char *)m + f->offset;

		if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
			if (*(const uint32_t *)((const char *)m + f->quantifier_offset) != f->id)
				continue;
		}
		if (f->label == PROTOBUF_C_LABEL_REPEATED) {
			size_t n = *(const size_t *)((const char *)m + f->quantifier_offset);
			const char *arr = *(char *const *)base;
			struct json_object *a = json_object_new_array();
			for (size_t k = 0; k < n; k++)
				json_object_array_add(a, scalar_to_json(f, arr + k * field_size(f)));
			json_object_object_add(o, f->name, a);
			continue;
		}
		struct json_object *v = scalar_to_json(f, base);
		if (v)
			json_object_object_add(o, f->name, v);
	}
	return o;
}

void json_print(struct json_object *o)
{
	puts(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN |
					       JSON_C_TO_STRING_NOSLASHESCAPE));
	fflush(stdout);
	json_object_put(o);
}
