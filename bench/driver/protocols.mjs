// Wire adapters: how a client of each server signs in, relays and keeps alive.
// The hot path (relay) never parses JSON: frames carry a "~<stamp>~" marker
// that is found with indexOf, so the driver spends its core on sockets.

const SDP_LINES = [
  "v=0",
  "o=- 4611731400430051336 2 IN IP4 127.0.0.1",
  "s=-",
  "t=0 0",
  "a=group:BUNDLE 0 1",
  "a=extmap-allow-mixed",
  "a=msid-semantic: WMS stream",
  "m=audio 9 UDP/TLS/RTP/SAVPF 111 63 9 0 8 13 110 126",
  "c=IN IP4 0.0.0.0",
  "a=rtcp:9 IN IP4 0.0.0.0",
  "a=ice-ufrag:Kq3F",
  "a=ice-pwd:zK8sW0tXp4rF1nA7cQ2vB9yH",
  "a=ice-options:trickle",
  "a=fingerprint:sha-256 3B:6F:9A:21:7C:44:D0:8E:5A:11:C2:9F:70:3E:B8:64:12:AA:5D:E9:07:CB:38:F1:9C:4D:62:80:1B:E3:57:A6",
  "a=setup:actpass",
  "a=mid:0",
  "a=sendrecv",
  "a=rtcp-mux",
  "a=rtpmap:111 opus/48000/2",
  "a=fmtp:111 minptime=10;useinbandfec=1",
  "m=video 9 UDP/TLS/RTP/SAVPF 96 97 102 103",
  "c=IN IP4 0.0.0.0",
  "a=mid:1",
  "a=sendrecv",
  "a=rtcp-mux",
  "a=rtcp-rsize",
  "a=rtpmap:96 VP8/90000",
  "a=rtcp-fb:96 goog-remb",
  "a=rtcp-fb:96 transport-cc",
  "a=rtcp-fb:96 ccm fir",
  "a=rtcp-fb:96 nack",
  "a=rtcp-fb:96 nack pli",
  "a=rtpmap:97 rtx/90000",
  "a=fmtp:97 apt=96",
  "a=rtpmap:102 H264/90000",
  "a=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42001f",
];

// Stands where the marker goes; plain ASCII so that no JSON escaping (even
// nested, as in our ICE data) changes it.
const PLACEHOLDER = "@@MARK@@";

/** An SDP-like string of about 1.2 KB with the marker in it. */
function sdpText(marker) {
  return SDP_LINES.join("\r\n") + `\r\na=x-bench:${marker}\r\n`;
}

/** An ICE candidate line of about 100 bytes with the marker in it. */
function candidateLine(marker) {
  return `candidate:${marker} 1 udp 2122260223 192.0.2.5 54321 typ host generation 0`;
}

/**
 * Our server: {type, target, data}; data is what the Android app sends (a raw
 * SDP string, or the candidate as a JSON string).
 */
const signaling = {
  name: "signaling",
  url(server, id) {
    return `ws://${server.host}:${server.port}/`;
  },
  signInFrames(id) {
    return [JSON.stringify({ type: "SignIn", username: id })];
  },
  isReady(message) {
    return message.type === "SignedIn";
  },
  heartbeatFrame: null,
  hasStart: true,
  /** Frame text split around the marker, so a send is two concatenations. */
  template(kind, target) {
    const type = { offer: "Offer", answer: "Answer", ice: "IceCandidates", start: "StartConnection" }[kind];
    if (kind === "start") return [JSON.stringify({ type, target }), ""];
    const data =
      kind === "ice"
        ? JSON.stringify({ sdpMid: "0", sdpMLineIndex: 0, sdp: candidateLine(PLACEHOLDER), serverUrl: "", adapterType: "UNKNOWN" })
        : sdpText(PLACEHOLDER);
    return JSON.stringify({ type, target, data }).split(PLACEHOLDER);
  },
  kindOf(text) {
    // Received frames are {"type":"Offer"|"Answer"|"IceCandidates"|...,...}.
    const c = text.charCodeAt(9);
    if (c === 79) return "offer"; // O
    if (c === 65) return "answer"; // A
    if (c === 73) return "ice"; // I
    if (c === 83) return "start"; // S (StartConnection, SignedIn, SessionReplaced)
    return "other";
  },
  errorOf(message) {
    return message.type === "Error" ? message.code || "error" : null;
  },
};

/**
 * PeerJS server 1.0.x: the id is fixed at the handshake; payloads are what the
 * peerjs client library sends (objects with sdp/candidate and a connectionId).
 */
const peerjs = {
  name: "peerjs",
  url(server, id) {
    return `ws://${server.host}:${server.port}/peerjs?key=peerjs&id=${encodeURIComponent(id)}&token=t${id.length}x`;
  },
  signInFrames() {
    return [];
  },
  isReady(message) {
    return message.type === "OPEN";
  },
  // The peerjs client library sends this every 5 s; the server drops a
  // client after alive_timeout without one.
  heartbeatFrame: JSON.stringify({ type: "HEARTBEAT" }),
  hasStart: false,
  template(kind, target) {
    const type = { offer: "OFFER", answer: "ANSWER", ice: "CANDIDATE" }[kind];
    const payload =
      kind === "ice"
        ? { candidate: { candidate: candidateLine(PLACEHOLDER), sdpMid: "0", sdpMLineIndex: 0 }, type: "data", connectionId: "dc_bench0000000" }
        : { sdp: { type: kind, sdp: sdpText(PLACEHOLDER) }, type: "data", connectionId: "dc_bench0000000", browser: "node" };
    return JSON.stringify({ type, payload, dst: target }).split(PLACEHOLDER);
  },
  kindOf(text) {
    // Relayed frames keep the sender's key order: {"type":"OFFER"|...}.
    const c = text.charCodeAt(9);
    if (c === 79) return "offer";
    if (c === 65) return "answer";
    if (c === 67) return "ice";
    return "other";
  },
  errorOf(message) {
    if (message.type === "ERROR" || message.type === "ID-TAKEN") return message.type;
    if (message.type === "EXPIRE" || message.type === "LEAVE") return "target_not_found";
    return null;
  },
};

export const PROTOCOLS = { signaling, peerjs };

/** Return the stamp between the first two "~" of a frame, or null. */
export function markerOf(text) {
  const start = text.indexOf("~");
  if (start < 0) return null;
  const end = text.indexOf("~", start + 1);
  return end < 0 ? null : text.slice(start + 1, end);
}
