#!/usr/bin/env python3
"""Where one tcp+disk write's time goes, hop by hop (issue 19).

Temporary timestamps, never committed to the code (they would sit in the
hot path): apply probe.patch, build the bench, run one client, read the
events back, and take the patch out again:

    git apply scripts/latency-probe/probe.patch
    cargo bench --bench runtime_throughput --no-run
    OAR_LAT_PROBE=/tmp/lat OAR_BENCH_SETUPS=tcp+disk OAR_BENCH_CLIENTS=1 \
        OAR_BENCH_MS=1500 target/release/deps/runtime_throughput-* --bench
    scripts/latency-probe/chain.py /tmp/lat.1
    git apply -R scripts/latency-probe/probe.patch

Each write (cli_start .. cli_end) is walked backwards from the reply: each
hop is the last event of its kind before the next one, so a hop's p50 is
that of the path that decided the write (the follower that acked first).
Node ids: 1 leads; grp_send's id is from*10+to; the writer's events (wt_*,
fs_*) carry no node.
"""
import sys, statistics
ev=[l.split() for l in open(sys.argv[1])]
ev=[(int(a)/1000.0,b,int(c)) for a,b,c in ev]
wins=[];cur=None
for t,l,i in ev:
    if l=='cli_start': cur=[(t,l,i)]
    elif cur is not None:
        cur.append((t,l,i))
        if l=='cli_end': wins.append(cur); cur=None
wins=wins[len(wins)//10:]
chain=[('apply_reply',None),('apply_wake',None),('grp_apply_send',{1}),('grp_msg',{1}),('in_route',{1}),('tx_written',None),('tx_wake',None),('grp_send',{21,31}),('grp_persisted',{2,3}),('wt_end',None),('fs_end',None),('fs_begin',None),('wt_begin',None),('grp_submit',{2,3}),('grp_msg',{2,3}),('in_route',{2,3}),('tx_written',None),('tx_wake',None),('grp_send',{12,13}),('grp_propose',{1}),('cli_start',None)]
res={}
for w in wins:
    t=w[-1][0]; prev=t; ok=True
    pts=[('cli_end',t)]
    for lab,ids in chain:
        cand=[e for e in w if e[1]==lab and (ids is None or e[2] in ids) and e[0]<=prev]
        if not cand: ok=False;break
        prev=cand[-1][0]; pts.append((lab+(str(sorted(ids)) if ids else ''),prev))
    if not ok: continue
    pts.reverse()
    for k in range(1,len(pts)):
        res.setdefault((k,pts[k-1][0]+' -> '+pts[k][0]),[]).append(pts[k][1]-pts[k-1][1])
tot=0
for (k,name),v in sorted(res.items()):
    m=statistics.median(v); tot+=m
    print(f"{name:45s} p50 {m:7.1f}  mean {statistics.mean(v):7.1f}")
print("sum of p50s", round(tot,1), "windows", len(wins))
