#!/bin/sh
# check_help.sh PROGRAM [+NAME | -NAME]...: PROGRAM --help exits 0, lists each +NAME as a
# setting and never lists a -NAME (a setting the program does not read must not be offered).
program=$1
shift
out=$("$program" --help) || { echo "FAIL: $program --help exited $?"; exit 1; }
status=0
for want in "$@"; do
    name=${want#?}
    if printf '%s\n' "$out" | grep -q "^  $name "; then found=1; else found=0; fi
    case $want in
    +*) [ $found = 1 ] || { echo "FAIL: $name missing from $program --help"; status=1; } ;;
    -*) [ $found = 0 ] || { echo "FAIL: $name listed by $program --help"; status=1; } ;;
    esac
done
[ $status = 0 ] && echo "ok: $program --help"
exit $status
