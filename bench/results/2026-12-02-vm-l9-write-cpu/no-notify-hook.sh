#!/usr/bin/env bash
for p in 15490 15491 15492; do
    for t in us_east eu_west asia_pac; do
        /usr/lib/postgresql/15/bin/psql -X -q -h 127.0.0.1 -p $p -U postgres -d layers -c "ALTER TABLE records_$t DISABLE TRIGGER records_${t}_applied"
    done
done
