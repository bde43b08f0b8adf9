// Wire probe of the id-taken page's sequence: one peer opens an id, then 10
// sockets try the same id with other tokens at once; print each answer frame.
import WebSocket from "ws"; // e.g. run where `npm install peer` put ws
const port = process.argv[2];
const id = "probe" + Math.random().toString(36).slice(2, 10);
const url = (token) => `ws://127.0.0.1:${port}/peerjs?key=peerjs&id=${id}&token=${token}&version=1.5.5`;
const first = (ws) => new Promise((r) => { ws.once("message", (m) => r(m.toString())); ws.once("close", (c) => r(`(closed ${c})`)); });
const a = new WebSocket(url("tokenA"));
console.log("A:", await first(a));
const answers = await Promise.all(Array.from({ length: 10 }, async (_, i) => {
	const ws = new WebSocket(url("tok" + i));
	const m = await first(ws);
	const closed = await new Promise((r) => ws.readyState === 3 ? r("closed") : ws.once("close", (c) => r("close " + c)));
	return `${i}: ${m} then ${closed}`;
}));
answers.forEach((s) => console.log(s));
a.close();
