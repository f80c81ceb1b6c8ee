#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-only
"""Check wpmigd's layering (daemon/meson.build has the order).

1. Includes: a file in daemon/F/ includes headers of F itself or of a lower
   folder, never of a higher folder and never of daemon/ itself.
2. Calls, from the built objects (nm): no object calls a function defined
   in a higher folder, and no two files call each other, directly or round
   a longer circle, within a folder or across folders.

usage: check-layers.py SOURCE_ROOT BUILD_ROOT
Exit 0 when clean, 1 with one line per problem.
"""
import os
import re
import subprocess
import sys

ORDER = ['basic', 'track', 'pipeline', 'store', 'peer', 'qemu', 'control']
TOP = 'daemon'  # daemon/ itself, above every folder
# headers that come from outside daemon/: proto/, generated, config
EXTERNAL = re.compile(r'(\.pb-c\.h|^frame\.h|^build-config\.h)$')
INCLUDE = re.compile(r'^#include "([^"]+)"', re.M)


def rank(folder):
    return len(ORDER) if folder == TOP else ORDER.index(folder)


def folder_of(rel):
    """'daemon/track/pass.c' -> 'track'; 'daemon/main.c' -> TOP."""
    parts = rel.split('/')
    return parts[1] if len(parts) == 3 else TOP


def check_includes(src):
    problems = []
    top = os.path.join(src, 'daemon')
    for dirpath, _, names in os.walk(top):
        for name in sorted(names):
            if not name.endswith(('.c', '.h')):
                continue
            rel = os.path.relpath(os.path.join(dirpath, name), src)
            folder = folder_of(rel)
            if folder != TOP and folder not in ORDER:
                problems.append(f'{rel}: folder {folder} is not in the layer order')
                continue
            with open(os.path.join(src, rel)) as f:
                text = f.read()
            for inc in INCLUDE.findall(text):
                if EXTERNAL.search(inc):
                    continue
                if '/' in inc:
                    target = inc.split('/')[0]
                    if target not in ORDER:
                        problems.append(f'{rel}: includes "{inc}" of no known folder')
                    elif rank(target) > rank(folder):
                        problems.append(f'{rel}: includes "{inc}" of the higher folder {target}')
                elif not os.path.exists(os.path.join(dirpath, inc)):
                    problems.append(f'{rel}: includes "{inc}", not a header of its own folder')
                elif folder != TOP and rel.endswith('.h') and inc == 'internal.h':
                    problems.append(f'{rel}: a public header includes the folder\'s internal.h')
    return problems


def objects(build):
    """{object path: folder} for every object of wpmigd and its libraries."""
    objs = {}
    for folder in ORDER + [TOP]:
        d = os.path.join(build, 'daemon') if folder == TOP else \
            os.path.join(build, 'daemon', folder)
        if not os.path.isdir(d):
            continue
        for sub in os.listdir(d):
            if not sub.endswith('.p'):
                continue
            if folder == TOP and sub != 'wpmigd.p':
                continue
            p = os.path.join(d, sub)
            for name in os.listdir(p):
                if name.endswith('.o'):
                    objs[os.path.join(p, name)] = folder
    return objs


def symbols(path):
    out = subprocess.run(['nm', path], capture_output=True, text=True, check=True).stdout
    defined, undefined = set(), set()
    for line in out.splitlines():
        fields = line.split()
        if len(fields) == 2 and fields[0] == 'U':
            undefined.add(fields[1])
        elif len(fields) == 3 and fields[1] in 'TDBR':
            defined.add(fields[2])
    return defined, undefined


def source_name(obj):
    # daemon/track/libwpmig-track.a.p/pass.c.o -> track/pass.c
    name = os.path.basename(obj)[:-2]
    folder = os.path.basename(os.path.dirname(os.path.dirname(obj)))
    return name if folder == 'daemon' else f'{folder}/{name}'


def sccs(nodes, edges):
    """Tarjan's strongly connected components, iteratively."""
    index, low, on, stack, out, counter = {}, {}, set(), [], [], [0]
    for root in nodes:
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = counter[0]
        counter[0] += 1
        stack.append(root)
        on.add(root)
        while work:
            v, it = work[-1]
            advanced = False
            for w in it:
                if w not in index:
                    index[w] = low[w] = counter[0]
                    counter[0] += 1
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(edges[w]))))
                    advanced = True
                    break
                if w in on:
                    low[v] = min(low[v], index[w])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                out.append(comp)
    return out


def check_calls(build):
    objs = objects(build)
    if not objs:
        return [f'no objects under {build}/daemon: build first']
    owner, undef = {}, {}
    for o in objs:
        d, u = symbols(o)
        undef[o] = u
        for s in d:
            owner[s] = o
    problems, edges = [], {o: set() for o in objs}
    for o, us in undef.items():
        for s in sorted(us):
            t = owner.get(s)
            if not t or t == o:
                continue
            edges[o].add(t)
            if rank(objs[t]) > rank(objs[o]):
                problems.append(f'{source_name(o)} calls {s}() of the higher folder '
                                f'{objs[t]} ({source_name(t)})')
    for comp in sccs(sorted(objs), edges):
        if len(comp) > 1:
            problems.append('files calling each other round a circle: ' +
                            ', '.join(sorted(source_name(o) for o in comp)))
    return problems


def main():
    if len(sys.argv) != 3:
        print(__doc__.strip().splitlines()[-2], file=sys.stderr)
        return 2
    problems = check_includes(sys.argv[1]) + check_calls(sys.argv[2])
    for p in problems:
        print(p)
    print(f'layers: {len(problems)} problems')
    return 1 if problems else 0


if __name__ == '__main__':
    sys.exit(main())
