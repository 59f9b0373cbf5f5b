#!/bin/sh
# The public header must compile standalone as strict C99 (and as C++ if a
# C++ compiler is around), with every warning an error.
set -eu
src=$(mktemp --suffix=.c)
trap 'rm -f "$src"' EXIT
printf '#include <sandbox.h>\nint main(void) { sandbox_options_t o = SANDBOX_OPTIONS_INIT; sandbox_exec_options_t e = SANDBOX_EXEC_OPTIONS_INIT; (void)o; (void)e; return 0; }\n' >"$src"
${CC:-cc} -std=c99 -pedantic -Wall -Wextra -Werror -fsyntax-only -I"$top_srcdir/include" "$src"
if command -v g++ >/dev/null 2>&1; then
	g++ -x c++ -std=c++11 -pedantic -Wall -Wextra -Werror -fsyntax-only -I"$top_srcdir/include" "$src"
fi
echo "PASS: include/sandbox.h compiles with -std=c99 -pedantic -Wall -Wextra -Werror"
