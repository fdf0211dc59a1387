#!/bin/sh
# Active-learning rounds (run by the Makefile; restartable: finished steps are skipped).
#
#   al-loop.sh ROUNDS
#
# Round r: fit gap-r.h5 on db-r.xyz; its errors on test.xyz; NVT MD at $TEMPERATURE K with
# --max-uncertainty $MAX_U from the first test frame. Exit status 0: the guard did not fire
# and the loop ends. Exit status 3: md wrote the offending frame; it and rattled copies of it
# are labelled with SW (label-r.xyz), build-db --explore gap-r.h5 adds the most uncertain
# snapshots of short MD around them (explore-r.xyz), and db-(r+1).xyz is db-r.xyz plus both.
# Writes rounds.tsv (one row per round). Environment: MLP, SEED, FIT_OPTS, MD_OPTS, MAX_U,
# TEMPERATURE, EXPLORE_OPTS (the Makefile sets them all).
set -eu
rounds=$1
r=0
out=rounds.tsv.tmp
printf 'round\tn_train\tenergy_rmse_meV/atom\tforces_rmse_eV/A\tmd_steps\tguard\n' > $out
while :; do
    if [ ! -f gap-$r.h5 ]; then
        # eval: FIT_OPTS may hold quoted hypers such as --soap "n_max=4 l_max=3"
        eval "$MLP fit db-$r.xyz $FIT_OPTS --seed $SEED -o gap-$r.h5" > fit-$r.txt
    fi
    $MLP validate gap-$r.h5 test.xyz --format tsv > err-$r.tsv
    if [ ! -f md-$r.status ]; then
        status=0
        $MLP md gap-$r.h5 test.xyz --frame 0 --ensemble nvt --temperature $TEMPERATURE \
            $MD_OPTS --seed $SEED --max-uncertainty $MAX_U --log md-$r.log \
            --extrapolated md-$r.extrapolated.xyz || status=$?
        case $status in 0|3) echo $status > md-$r.status ;; *) exit $status ;; esac
    fi
    status=$(cat md-$r.status)
    guard=$([ "$status" = 3 ] && echo fired || echo quiet)
    n_train=$(grep -c Lattice db-$r.xyz)
    steps=$(awk '$1 ~ /^[0-9]+$/ {s = $1} END {print s}' md-$r.log)
    awk -v r=$r -v n=$n_train -v s=$steps -v g=$guard -F '\t' \
        '$1 == "overall" {printf "%d\t%d\t%s\t%s\t%s\t%s\n", r, n, $4, $6, s, g}' \
        err-$r.tsv >> $out
    next=$((r + 1))
    if [ "$status" = 0 ] || [ $next -ge "$rounds" ]; then
        break
    fi
    if [ ! -f db-$next.xyz ]; then
        # the offending frame, and rattled copies of it, labelled with SW
        cat > label-$r.toml <<TOML
seed = $((SEED + next))
[label]
calc = "sw"
isolated_atoms = false
[[structures]]
kind = "crystal"
config_type = "extrapolated"
base = { file = "md-$r.extrapolated.xyz" }
[[structures]]
kind = "rattle"
config_type = "extrapolated"
base = { file = "md-$r.extrapolated.xyz" }
count = 4
sigma = 0.05
TOML
        $MLP build-db label-$r.toml -o label-$r.xyz
        # and where gap-r is least certain in short MD from them
        $MLP build-db label-$r.toml --explore gap-$r.h5 $EXPLORE_OPTS -o explore-$r.xyz
        cat db-$r.xyz label-$r.xyz explore-$r.xyz > db-$next.xyz.tmp
        mv db-$next.xyz.tmp db-$next.xyz
    fi
    r=$next
done
mv $out rounds.tsv
cat rounds.tsv
