"""Hot path of the server's reading: in-process IPCServer, raw peers over loopback.
rt: one peer, 200 rounds of a write of 100 pings + wait for the 100 pongs; lone: 3000 single request round trips;
fan: a publisher pipelines 20,000 publishes (writes of 500) to 4 subscribers. Prints seconds."""
import asyncio, json, struct, sys, time
from ipc_server import IPCServer
P = struct.Struct(">I")
def fr(d):
    b = json.dumps(d, separators=(",", ":")).encode(); return P.pack(len(b)) + b
def m(app, t, ch, mid, payload=None): return fr({"message_id": mid, "app_id": app, "channel_id": ch, "message_type": t, "payload": payload, "timestamp": 0, "reply_to": None})
class Peer:
    async def open(self, port, app, name):
        self.r, self.w = await asyncio.open_connection("127.0.0.1", port); self.buf = b""; self.app = app
        self.w.write(m(app, "request", "system", "hello", {"action": "connect", "protocol": 2, "connection_id": name})); await self.count(1); return self
    async def count(self, n):
        got = 0
        while got < n:
            data = await self.r.read(1 << 20)
            buf = self.buf + data; i = 0
            while len(buf) - i >= 4:
                (k,) = P.unpack_from(buf, i)
                if len(buf) - i - 4 < k: break
                i += 4 + k; got += 1
            self.buf = buf[i:]
async def main():
    async with IPCServer("127.0.0.1", 0) as s:
        a = await Peer().open(s.port, "a", "a")
        batch = b"".join(m("a", "request", "system", f"p{i}", {"action": "ping"}) for i in range(100))
        t0 = time.perf_counter()
        for _ in range(200):
            a.w.write(batch); await a.count(100)
        rt = time.perf_counter() - t0
        one = m("a", "request", "system", "x", {"action": "ping"})
        t0 = time.perf_counter()
        for _ in range(3000):
            a.w.write(one); await a.count(1)
        lone = time.perf_counter() - t0
        subs = [await Peer().open(s.port, "f", f"s{i}") for i in range(4)]
        for p in subs:
            p.w.write(m("f", "subscribe", "t.x", "sub")); await p.count(1)
        pub = await Peer().open(s.port, "f", "pub")
        pubs = b"".join(m("f", "publish", "t.x", f"q{i}", {"i": i}) for i in range(500))
        t0 = time.perf_counter()
        async def drive():
            for _ in range(40):
                pub.w.write(pubs); await pub.w.drain()
        await asyncio.gather(drive(), *(p.count(20000) for p in subs))
        fan = time.perf_counter() - t0
        print(json.dumps({"rt": rt, "lone": lone, "fan": fan}))
asyncio.run(main())
