#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-only
"""Print the system calls a unit's SystemCallFilter= allows, one a line.

    syscall-filter.py UNIT_FILE

As systemd reads the setting: the first assignment decides allow- or
deny-listing (only an allow-list is handled here: a unit that deny-lists
first is an error); later "~..." assignments remove from the list; an
empty assignment resets it; an allow-list always includes @default.
@groups are expanded, recursively, with `systemd-analyze syscall-filter`
of the systemd on this machine, the one that would apply the unit.
"""
import subprocess
import sys


def group(name, cache={}):
    if name not in cache:
        out = subprocess.run(['systemd-analyze', 'syscall-filter', '--no-pager', name],
                             check=True, capture_output=True, text=True).stdout
        members = set()
        for line in out.splitlines()[1:]:
            line = line.strip()
            if not line or line.startswith('#'):
                continue
            members |= group(line) if line.startswith('@') else {line}
        cache[name] = members
    return cache[name]


def names(word):
    word = word.split(':')[0]  # "name:errno" only matters for deny-lists
    return group(word) if word.startswith('@') else {word}


def main():
    allow = None
    for line in open(sys.argv[1]):
        line = line.strip()
        if not line.startswith('SystemCallFilter='):
            continue
        value = line.split('=', 1)[1].strip()
        if not value:
            allow = None
            continue
        deny = value.startswith('~')
        words = value.lstrip('~').split()
        if allow is None:
            if deny:
                sys.exit('%s: SystemCallFilter= deny-lists first; expected an allow-list'
                         % sys.argv[1])
            allow = set(group('@default'))
        for w in words:
            if deny:
                allow -= names(w)
            else:
                allow |= names(w)
    if not allow:
        sys.exit('%s: no SystemCallFilter= allow-list' % sys.argv[1])
    print('\n'.join(sorted(allow)))


main()
