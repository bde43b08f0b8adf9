"""Attack scripts run in their own process, so that the measuring side's
event loop is not starved by the attacker's (run: python -m tests.attacker).

Prints one JSON object with what the attack saw.
"""

from __future__ import annotations

import asyncio
import json
import sys

import websockets


async def flood(url: str, frames: int) -> dict:
    ws = await websockets.connect(url, local_addr=("127.0.0.2", 0), max_size=None)
    await ws.send(json.dumps({"type": "SignIn", "username": "flooder"}))
    await ws.recv()
    sent = told = 0

    async def read():
        nonlocal told
        try:
            async for frame in ws:
                told += json.loads(frame).get("code") == "rate_limited"
        except websockets.ConnectionClosed:
            pass

    reader = asyncio.ensure_future(read())
    try:
        for n in range(frames):
            await ws.send(json.dumps({"type": "IceCandidates", "target": "flood-target", "data": str(n)}))
            sent += 1
    except websockets.ConnectionClosed:
        pass
    await asyncio.wait_for(reader, 20)
    return {"sent": sent, "told": told, "code": ws.close_code}


# Below the default per-connection limit (50 frames/s): every frame is then
# answered by the decoder, not by the rate limit.
MALFORMED_FRAMES_PER_SECOND = 40


async def malformed(url: str, kinds: dict, per_kind: int, sockets: int) -> dict:
    clients = []
    for n in range(sockets):
        ws = await websockets.connect(url, local_addr=(f"127.0.0.{10 + n}", 0), max_size=None)
        await ws.send(json.dumps({"type": "SignIn", "username": f"fuzz{n}"}))
        await ws.recv()
        clients.append(ws)
    answered = {}
    slowest = 0.0
    loop = asyncio.get_running_loop()
    for kind, frame in kinds.items():
        payload = frame.encode("latin-1") if kind == "binary frame" else frame
        started = loop.time()

        async def attack(ws):
            got = 0
            for _ in range(per_kind // sockets):
                await ws.send(payload)
                reply = json.loads(await asyncio.wait_for(ws.recv(), 5))
                assert reply["type"] == "Error", (kind, reply)
                assert reply["code"] != "rate_limited", (kind, reply)
                got += 1
                await asyncio.sleep(1 / MALFORMED_FRAMES_PER_SECOND)
            return got

        answered[kind] = sum(await asyncio.gather(*(attack(ws) for ws in clients)))
        slowest = max(slowest, loop.time() - started)
    return {"answered": answered, "slowest": slowest}


def main() -> None:
    command, url, *args = sys.argv[1:]
    if command == "flood":
        result = asyncio.run(flood(url, int(args[0])))
    else:
        spec = json.loads(sys.stdin.read())
        result = asyncio.run(malformed(url, spec["kinds"], spec["per_kind"], spec["sockets"]))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
