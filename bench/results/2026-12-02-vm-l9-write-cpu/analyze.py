import re,sys,collections
d=sys.argv[1]
def load(f):
    r={}
    for line in open(f):
        p=line.rstrip('\n').split('|')
        if len(p)<5: continue
        r[p[0]]=(int(p[1]),int(p[2]),p[3],p[4])
    return r
b=load(d+'/before.txt'); a=load(d+'/after.txt')
reqs=int(re.search(r'requests=(\d+)',open(d+'/lg.txt').read()).group(1))
act={}
for line in open(d+'/activity.txt'):
    p=line.strip().split('|')
    if len(p)>=4: act[p[1]]=(p[0],p[2],p[3])
port2reg={'15490':'us-east','15491':'eu-west','15492':'asia-pac'}
pm={}  # postmaster pid -> region
for pid,(t,c,cmd,pc) in a.items():
    m=re.search(r'postgres -D \S+ -p (\d+)',cmd)
    if m: pm[pid]=port2reg.get(m.group(1),m.group(1))
groups=collections.Counter()
for pid,(t,c,cmd,pc) in a.items():
    t0,c0=(b[pid][0],b[pid][1]) if pid in b else (0,0)
    dt=t-t0
    if pid in pm:
        groups[(pm[pid],'postmaster')]+=dt
        groups[(pm[pid],'exited children')]+=c-c0
        continue
    mreg=None
    pp=None
    try: pp=open(f'/proc/{pid}/stat').read()
    except: pass
    m=re.search(r'postgres -D \S+ -p (\d+)',pc)
    if m: mreg=port2reg.get(m.group(1))
    if cmd.startswith('postgres:'):
        kind=cmd[len('postgres: '):]
        if pid in act: kind=act[pid][1]+' '+act[pid][2]
        kind=re.sub(r'\d+\.\d+\.\d+\.\d+\(\d+\)','',kind)
        kind=re.sub(r' (idle|SELECT|INSERT|UPDATE|COMMIT|BEGIN).*','',kind)
        kind=re.sub(r'subscription \d+','subscription',kind)
        groups[(mreg or '?',kind.strip())]+=dt
    elif 'delay-proxy' in cmd:
        groups[('proxies','delay-proxy '+' '.join(cmd.split()[1:]))]+=dt
    elif 'redis' in cmd: groups[('redis',cmd.split()[1])]+=dt
    else: groups[('server',cmd.split('/')[-1])]+=dt
tot=sum(groups.values())
print(f'requests {reqs}; ticks total {tot}; us/write total {tot*10000/reqs:.0f}')
for k,v in sorted(groups.items(), key=lambda kv:-kv[1]):
    if v: print(f'{v*10000/reqs:8.0f} us/write  {k[0]:9} {k[1]}')
