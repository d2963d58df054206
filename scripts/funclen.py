#!/usr/bin/env python3
"""Lists the C functions under a folder that are longer than a limit.

    scripts/funclen.py DIR LIMIT      prints "LINES FILE:LINE NAME", longest first;
                                      exits 1 when it printed anything

A function is found the way the project formats them: its body opens with a
'{' at column 0 (or at the end of a line that starts at column 0 and holds a
'(') and closes at the next '}' at column 0. Its length counts from the line
that names it to the closing brace.
"""
import os
import re
import sys

SKIP = ('struct', 'enum', 'union', 'typedef', 'static const', 'const')


def functions(path):
    lines = open(path, errors='replace').read().split('\n')
    start = name = None
    for i, line in enumerate(lines):
        if start is None:
            opens = line.startswith('{') or (
                line and not line[0].isspace() and line.rstrip().endswith('{')
                and '(' in line and not line.startswith(SKIP))
            if opens:
                j = i
                while j >= 0 and '(' not in lines[j]:
                    j -= 1
                m = re.search(r'(\w+)\s*\(', lines[j]) if j >= 0 else None
                name = m.group(1) if m else '?'
                start = j if j >= 0 else i
        elif line.startswith('}'):
            yield name, start + 1, i - start + 1
            start = None


def main():
    root, limit = sys.argv[1], int(sys.argv[2])
    found = []
    for d, _, files in os.walk(root):
        for f in files:
            if f.endswith('.c'):
                p = os.path.join(d, f)
                found += [(n, p, s, name) for name, s, n in functions(p) if n > limit]
    for n, p, s, name in sorted(found, reverse=True):
        print(f"{n:5d} {p}:{s} {name}")
    return 1 if found else 0


if __name__ == '__main__':
    sys.exit(main())
