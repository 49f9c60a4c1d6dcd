"""Memory under saturated ingest: starts a release server with default
settings (plus any extra `serve` arguments), runs `spanlake load` flat out
for the given number of spans, and prints VmRSS, buffered bytes, flushes and
compactions every second, then the peak.

    python3 benches/e2e/rss.py 10000000 [serve args...]
"""
import os, re, shutil, subprocess, sys, time, urllib.request

binary = os.path.join(os.environ.get("CARGO_TARGET_DIR", "/var/tmp/spanlake-target"), "release", "spanlake")
d = "/var/tmp/rss-probe"
shutil.rmtree(d, ignore_errors=True)
extra = sys.argv[2:]
srv = subprocess.Popen([binary, "serve", "--data-dir", d, "--otlp-grpc-addr", "127.0.0.1:34317", "--otlp-http-addr", "127.0.0.1:34318", "--http-addr", "127.0.0.1:39411", *extra], stdout=subprocess.DEVNULL, stderr=open(d + ".log", "w"))
while True:
    try:
        if urllib.request.urlopen("http://127.0.0.1:39411/readyz").status == 200: break
    except Exception: time.sleep(0.2)
load = subprocess.Popen([binary, "load", "--endpoint", "http://127.0.0.1:34317", "--spans", sys.argv[1], "--templates", "2000", "--json"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
def metric(text, name):
    m = re.findall(rf"^{name}(?:{{[^}}]*}})? (\S+)", text, re.M)
    return sum(float(x) for x in m)
peak = 0
while load.poll() is None:
    rss = int(re.search(r"VmRSS:\s+(\d+)", open(f"/proc/{srv.pid}/status").read()).group(1)) // 1024
    m = urllib.request.urlopen("http://127.0.0.1:39411/metrics").read().decode()
    peak = max(peak, rss)
    print(f"rss {rss:5d} MiB  buffer {metric(m,'spanlake_buffer_bytes')/2**20:6.0f} MiB  flushes {metric(m,'spanlake_flushes_total'):4.0f}  compactions {metric(m,'spanlake_compactions_total'):3.0f}", flush=True)
    time.sleep(1)
print("peak", peak, re.search(r"VmHWM:\s+(\d+)", open(f"/proc/{srv.pid}/status").read()).group(1))
srv.terminate(); srv.wait()
