"""funcd's Python runtime server: `python3 server.py` (template.yaml's command) serves the function named
by FUNCD_HANDLER as docs/runtime-contract.md describes, with the standard library only.

The code is in the funcd_runtime package beside this file, not here: Python compiles a script on every
start, but keeps an imported module's bytecode in __pycache__. Compiling the runtime takes 6 to 12 ms of a
15 to 25 ms cold start; loading its cached bytecode, under 1 ms. The cache is written on the first start
where the folder is writable; where it never is (the sandbox mounts it read-only), compile it once when
installing: `python3 -m compileall -q templates/python3/funcd_runtime` (not the whole folder: scaffold/
is copied into new functions as it is).
"""

from funcd_runtime.runtime import main

if __name__ == "__main__":
    main()
