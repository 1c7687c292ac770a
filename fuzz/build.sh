#!/bin/sh
# Builds the libFuzzer harnesses of fuzz/ into fuzz/build/ (clang with libFuzzer,
# AddressSanitizer and UndefinedBehaviorSanitizer). Called by `make fuzz`.
set -eu
cd "$(dirname "$0")/.."
CC=${FUZZ_CC:-clang}
OUT=${FUZZ_OUT:-fuzz/build}
mkdir -p "$OUT"
SAN="-fsanitize=address,undefined -fno-sanitize-recover=undefined"
CFLAGS="-std=c11 -D_GNU_SOURCE -g -O1 -fno-omit-frame-pointer -Wall -Wextra -Wno-unused-function -Icsrc $(pkg-config --cflags libxml-2.0 libcurl)"
LIBS="$(pkg-config --libs libxml-2.0 libcurl) -lcrypto -lz -lpthread"
obj() {   # a csrc file, instrumented for coverage but without libFuzzer's main
    $CC $CFLAGS $SAN -fsanitize=fuzzer-no-link -c "csrc/$1.c" -o "$OUT/$1.o"
}
for f in buf xml gzip sigv4; do obj $f; done
link() {  # target, then the csrc objects it needs
    t=$1; shift
    objs=""; for o in "$@"; do objs="$objs $OUT/$o.o"; done
    $CC $CFLAGS $SAN -fsanitize=fuzzer "fuzz/fuzz_$t.c" $objs $LIBS -o "$OUT/fuzz_$t"
}
link xml_list buf xml
link xml_reply buf xml
link gzip buf gzip
link sigv4 buf sigv4
link headers buf
link credentials buf xml sigv4
