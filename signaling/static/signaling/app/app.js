/* P2P share: the signaling server's web client.
 *
 * Signaling follows the Android app so browsers and the app can meet: the
 * requester sends StartConnection; the side that accepts creates the data
 * channel and sends the Offer as a raw SDP string; the requester answers
 * with one; each ICE candidate goes in its own IceCandidates frame as the
 * JSON string the app makes ({sdpMid, sdpMLineIndex, sdp, ...}). Received
 * frames are accepted in the browsers' object forms too.
 *
 * On the data channel, two formats (docs/web-client.md):
 * - the Android app's: every message cut into chunks of at most
 *   APP_CHUNK_BYTES, each one data-channel message made of the line
 *   "HDR|TYPE|messageId|chunkIndex|totalChunks|flags\n" and the payload;
 * - between web clients (the channel's protocol is CHANNEL_PROTOCOL, or
 *   the peer said hello): JSON control messages and binary file chunks.
 * Which one the peer speaks is known when its channel arrives (the app's
 * has no protocol); on a channel this page created, from the peer's hello
 * (a web client) or its first HDR chunk or silence (the app).
 *
 * Every piece of user or peer text reaches the page through textContent.
 */
(() => {
  "use strict";

  const CHANNEL_LABEL = "p2p";
  const CHANNEL_PROTOCOL = "p2p-files/1";
  // The app's framing: chunk payloads of at most 16,000 bytes, each after
  // a header line of exactly six "|"-separated fields.
  const APP_CHUNK_BYTES = 16000;
  const APP_HEADER_PREFIX = "HDR|";
  const APP_TYPES = new Set(["TEXT", "IMAGE", "VIDEO", "FILE"]);
  // A header is a few dozen bytes plus a file name; anything longer is not
  // one.
  const APP_MAX_HEADER_BYTES = 1024;
  // More chunks than this is no message the app could hold in memory.
  const APP_MAX_CHUNKS = 1000000;
  const utf8 = new TextEncoder();
  // Images the app can decode (Android's BitmapFactory) and a browser can
  // show safely; SVG is left out because it can carry scripts.
  const IMAGE_TYPES = new Set(["image/jpeg", "image/png", "image/gif", "image/webp"]);
  // Sign-in errors that retrying cannot fix: stop reconnecting.
  const FATAL_SIGN_IN_ERRORS = new Set([
    "username_taken",
    "wrong_credentials",
    "invalid_username",
    "guests_disabled",
  ]);
  const CLOSE_SESSION_REPLACED = 4001;
  const CLOSE_DISCONNECTED_BY_ADMIN = 4002;

  // Tunables; tests shorten the timeouts through window.p2p.config.
  const config = {
    requestTimeoutMs: 30000,
    connectTimeoutMs: 30000,
    reconnectBaseMs: 1000,
    reconnectMaxMs: 30000,
    // 64 KiB messages are accepted by every current WebRTC stack.
    chunkSize: 64 * 1024,
    readSize: 1024 * 1024,
    // Pause sending above the high mark, resume below the low one: the
    // link stays busy while memory stays bounded (Chrome closes a channel
    // whose send buffer passes 16 MiB).
    highWaterBytes: 4 * 1024 * 1024,
    lowWaterBytes: 1024 * 1024,
    // On a channel this page created, how long to wait for a web client's
    // hello before taking the peer for the app (which never says one).
    helloWaitMs: 1500,
    // The app holds a whole received file in the phone's memory: warn
    // above the first size, refuse above the second (docs/web-client.md).
    appWarnBytes: 50 * 1000 * 1000,
    appMaxBytes: 256 * 1024 * 1024,
    // How often to compare the messages the connection counted with the
    // ones delivered to this page (the difference: chunks a browser threw
    // away), and how long a message from the app may go without a chunk.
    appLossCheckMs: 1000,
    appStallMs: 15000,
  };
  const stats = { connectToOpenMs: null };

  const $ = (id) => document.getElementById(id);
  const ui = {
    status: $("status"),
    notice: $("notice"),
    noticeText: $("notice-text"),
    noticeClose: $("notice-close"),
    signInPanel: $("sign-in-panel"),
    signInForm: $("sign-in-form"),
    username: $("username"),
    password: $("password"),
    connectPanel: $("connect-panel"),
    connectForm: $("connect-form"),
    peerName: $("peer-name"),
    connectButton: $("connect-button"),
    signOutButton: $("sign-out-button"),
    requestPanel: $("request-panel"),
    requestText: $("request-text"),
    acceptButton: $("accept-button"),
    declineButton: $("decline-button"),
    sessionPanel: $("session-panel"),
    sessionTitle: $("session-title"),
    sessionState: $("session-state"),
    hangUpButton: $("hang-up-button"),
    sessionTools: $("session-tools"),
    messages: $("messages"),
    messageForm: $("message-form"),
    messageInput: $("message-input"),
    fileInput: $("file-input"),
    shareButton: $("share-button"),
    appPeerHint: $("app-peer-hint"),
    appWarnSize: $("app-warn-size"),
    sharingState: $("sharing-state"),
    stopSharingButton: $("stop-sharing-button"),
    screenPanel: $("screen-panel"),
    remoteScreen: $("remote-screen"),
    screenCaption: $("screen-caption"),
    stopViewingButton: $("stop-viewing-button"),
    history: $("history"),
    transfers: $("transfers"),
  };

  // ---- Small helpers -----------------------------------------------------

  function el(tag, props = {}, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(props)) {
      if (key === "text") node.textContent = value;
      else if (key === "dataset") Object.assign(node.dataset, value);
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value);
    }
    node.append(...children);
    return node;
  }

  function formatBytes(bytes) {
    const units = ["B", "KB", "MB", "GB", "TB"];
    let value = bytes;
    let unit = 0;
    while (value >= 1000 && unit < units.length - 1) {
      value /= 1000;
      unit += 1;
    }
    return `${unit === 0 ? value : value.toFixed(value < 10 ? 1 : 0)} ${units[unit]}`;
  }

  function formatDuration(seconds) {
    if (seconds < 10) return `${Math.max(0, seconds).toFixed(1)} s`;
    const s = Math.round(seconds);
    if (s < 60) return `${s} s`;
    if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
    return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
  }

  function randomId() {
    // crypto.randomUUID needs a secure context; getRandomValues does not.
    const bytes = crypto.getRandomValues(new Uint8Array(8));
    return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  }

  function safeFileName(name) {
    // Browsers clean download names too; this keeps the shown name sane.
    const cleaned = String(name).replace(/[\u0000-\u001f\u007f/\\]/g, "_").trim();
    return cleaned.slice(0, 200) || "file";
  }

  function sniffImageType(bytes) {
    const b = new Uint8Array(bytes, 0, Math.min(12, bytes.byteLength));
    const starts = (...sig) => sig.every((v, i) => b[i] === v);
    if (starts(0xff, 0xd8, 0xff)) return "image/jpeg";
    if (starts(0x89, 0x50, 0x4e, 0x47)) return "image/png";
    if (starts(0x47, 0x49, 0x46, 0x38)) return "image/gif";
    if (starts(0x52, 0x49, 0x46, 0x46) && b[8] === 0x57 && b[9] === 0x45) {
      return "image/webp";
    }
    return null;
  }

  // ---- The Android app's framing ----------------------------------------

  function randomUuid() {
    // The app names each message with a random UUID (version 4).
    const b = crypto.getRandomValues(new Uint8Array(16));
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    const hex = Array.from(b, (v) => v.toString(16).padStart(2, "0")).join("");
    return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
  }

  function appTypeFor(mime) {
    if (IMAGE_TYPES.has(mime)) return "IMAGE";
    if (mime.startsWith("video/")) return "VIDEO";
    return "FILE";
  }

  function appFlags(mime, name) {
    // The app's own escaping: "|" would split the header, a newline end it.
    const clean = (value) => value.replace(/\|/g, "_").replace(/[\r\n]/g, " ");
    const parts = [];
    if (mime) parts.push(`mime=${clean(mime)}`);
    if (name) parts.push(`name=${clean(name)}`);
    return parts.length ? parts.join(";") : "0";
  }

  function parseAppFlags(text) {
    const flags = { mime: "", name: "" };
    let head = text === "0" ? "" : text;
    // A name may hold ";" itself, so it runs to the end.
    if (head.startsWith("name=")) {
      flags.name = head.slice(5);
      head = "";
    } else if (head.includes(";name=")) {
      const at = head.indexOf(";name=");
      flags.name = head.slice(at + 6);
      head = head.slice(0, at);
    }
    if (head.startsWith("mime=")) flags.mime = head.slice(5);
    return flags;
  }

  function appHeader(type, id, index, total, flags) {
    return utf8.encode(`${APP_HEADER_PREFIX}${type}|${id}|${index}|${total}|${flags}\n`);
  }

  function appChunk(header, payload) {
    const message = new Uint8Array(header.byteLength + payload.byteLength);
    message.set(header);
    message.set(payload, header.byteLength);
    return message;
  }

  function concat(parts) {
    const whole = new Uint8Array(parts.reduce((sum, part) => sum + part.byteLength, 0));
    let at = 0;
    for (const part of parts) {
      whole.set(part, at);
      at += part.byteLength;
    }
    return whole;
  }

  // What works instead when something from the app cannot arrive.
  const APP_FILE_ADVICE =
    "What works: text both ways, and pictures and files sent from this browser to the app. To get this one, open this page in the phone's browser instead of the app and send it from there.";
  const APP_TEXT_ADVICE =
    "Shorter messages (a few thousand characters) arrive whole, or send the text as a file from this browser's side.";

  function startsWithAppPrefix(bytes) {
    return bytes.byteLength >= 4 && bytes[0] === 0x48 && bytes[1] === 0x44 && bytes[2] === 0x52 && bytes[3] === 0x7c;
  }

  // Returns {type, id, index, total, flags, payload, fromString} for one
  // chunk in the app's framing, or null. A string message (the app sends
  // every chunk as one) keeps its payload as text until it is needed.
  function parseAppChunk(data) {
    let header;
    let payload;
    if (typeof data === "string") {
      if (!data.startsWith(APP_HEADER_PREFIX)) return null;
      const end = data.indexOf("\n");
      if (end < 0 || end > APP_MAX_HEADER_BYTES) return null;
      header = data.slice(0, end);
      payload = data.slice(end + 1);
    } else {
      const bytes = new Uint8Array(data);
      if (!startsWithAppPrefix(bytes)) return null;
      const end = bytes.subarray(0, APP_MAX_HEADER_BYTES + 1).indexOf(0x0a);
      if (end < 0) return null;
      header = new TextDecoder().decode(bytes.subarray(0, end));
      payload = bytes.subarray(end + 1);
    }
    // As the app reads it: exactly six fields.
    const fields = header.split("|");
    if (fields.length !== 6) return null;
    const [, type, id, indexText, totalText, flagsText] = fields;
    if (!APP_TYPES.has(type) || !id || !/^\d{1,7}$/.test(indexText) || !/^\d{1,7}$/.test(totalText)) {
      return null;
    }
    const index = Number(indexText);
    const total = Number(totalText);
    if (total < 1 || total > APP_MAX_CHUNKS || index >= total) return null;
    return {
      type,
      id,
      index,
      total,
      flags: parseAppFlags(flagsText),
      payload,
      fromString: typeof data === "string",
    };
  }

  function showNotice(text, kind = "error") {
    ui.noticeText.textContent = text;
    ui.notice.dataset.kind = kind;
    ui.notice.hidden = false;
  }

  function clearNotice() {
    ui.notice.hidden = true;
    ui.noticeText.textContent = "";
  }

  function setStatus(state, text) {
    ui.status.dataset.state = state;
    ui.status.textContent = text;
  }

  function addMessage(from, text, who = null) {
    const item = el("li", { dataset: { from } });
    if (who) item.append(el("span", { class: "who", text: `${who}:` }));
    item.append(el("span", { class: "text", text }));
    ui.messages.append(item);
    ui.history.hidden = false;
    item.scrollIntoView({ block: "nearest" });
  }

  // ---- Signaling socket --------------------------------------------------

  const account = {
    username: null,
    password: null,
    wantOnline: false,
    signedIn: false,
    socket: null,
    attempt: 0,
    retryTimer: null,
    countdown: null,
    iceServers: [],
    everSignedIn: false,
  };
  let session = null;
  let incoming = null;

  function signIn(username, password) {
    Object.assign(account, {
      username,
      password: password || null,
      wantOnline: true,
      attempt: 0,
      everSignedIn: false,
    });
    clearNotice();
    openSocket();
    render();
  }

  function openSocket() {
    clearTimeout(account.retryTimer);
    clearInterval(account.countdown);
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const socket = new WebSocket(`${scheme}//${location.host}/`);
    account.socket = socket;
    setStatus("connecting", account.attempt ? "Reconnecting…" : "Connecting…");
    socket.addEventListener("open", () => {
      const frame = { type: "SignIn", username: account.username };
      if (account.password) frame.data = account.password;
      socket.send(JSON.stringify(frame));
    });
    socket.addEventListener("message", (event) => {
      if (socket !== account.socket || typeof event.data !== "string") return;
      let frame;
      try {
        frame = JSON.parse(event.data);
      } catch {
        return;
      }
      if (frame && typeof frame === "object") onFrame(frame);
    });
    socket.addEventListener("close", (event) => {
      if (socket !== account.socket) return;
      account.socket = null;
      account.signedIn = false;
      onSocketClosed(event.code);
    });
  }

  const REPLACED_MESSAGE = () =>
    `${account.username} was signed in from another tab or device, so this page went offline. Sign in again to use the name here.`;
  const ADMIN_MESSAGE = "An administrator disconnected you. Sign in again to continue.";

  function onSocketClosed(code) {
    render();
    if (!account.wantOnline) return;
    if (code === CLOSE_SESSION_REPLACED) {
      goOffline(REPLACED_MESSAGE());
    } else if (code === CLOSE_DISCONNECTED_BY_ADMIN) {
      goOffline(ADMIN_MESSAGE);
    } else {
      scheduleReconnect();
    }
  }

  function scheduleReconnect() {
    const delay = Math.min(
      config.reconnectMaxMs,
      config.reconnectBaseMs * 2 ** account.attempt,
    );
    // Jitter keeps many clients from returning at once after a restart.
    const wait = Math.round(delay * (0.8 + Math.random() * 0.4));
    account.attempt += 1;
    const until = Date.now() + wait;
    const tick = () => {
      const left = Math.max(1, Math.ceil((until - Date.now()) / 1000));
      setStatus("reconnecting", `Offline: no connection to the server. Retrying in ${left} s…`);
    };
    tick();
    account.countdown = setInterval(tick, 1000);
    account.retryTimer = setTimeout(openSocket, wait);
  }

  function goOffline(message) {
    account.wantOnline = false;
    account.signedIn = false;
    clearTimeout(account.retryTimer);
    clearInterval(account.countdown);
    if (account.socket) {
      const socket = account.socket;
      account.socket = null;
      socket.close(1000);
    }
    if (incoming) incoming = null;
    setStatus(message ? "error" : "offline", message ? "Offline" : "Signed out");
    if (message) showNotice(message);
    render();
    ui.username.focus();
  }

  function sendSignal(type, target, data) {
    const socket = account.socket;
    if (!socket || socket.readyState !== WebSocket.OPEN || !account.signedIn) {
      return false;
    }
    const frame = { type, username: account.username, target };
    if (data !== undefined) frame.data = data;
    socket.send(JSON.stringify(frame));
    return true;
  }

  function onFrame(frame) {
    const from = typeof frame.username === "string" ? frame.username : null;
    switch (frame.type) {
      case "SignedIn":
        onSignedIn(frame.data);
        break;
      case "Error":
        onServerError(frame);
        break;
      case "SessionReplaced":
        // Acted on here, not only at the close (4001) that follows: a
        // proxy in between may not pass close codes on.
        goOffline(REPLACED_MESSAGE());
        break;
      case "Reconnect":
        // This server instance is stopping; the close (4003) follows and
        // the usual first, short, jittered retry finds another one.
        account.attempt = 0;
        setStatus("reconnecting", "The server is restarting. Reconnecting…");
        break;
      case "StartConnection":
        if (from) onRequest(from);
        break;
      case "DeclineConnection":
        if (from) onDecline(from, frame.data);
        break;
      case "Offer":
      case "Answer":
      case "IceCandidates":
        if (session && !session.ended && session.peer === from) session.receive(frame);
        else if (from && frame.type === "Offer") {
          // An offer nobody here asked for (a request this page withdrew).
          sendSignal("DeclineConnection", from, "Not expecting a connection");
        }
        break;
      case "PeerLeft":
        if (from) onPeerLeft(from, frame.data && frame.data.reason);
        break;
      case "IceServers":
        // Fresh TURN credentials before the old ones expire: used by the
        // next connection, and by the current one if it has to restart ICE.
        if (frame.data && Array.isArray(frame.data.iceServers)) {
          account.iceServers = frame.data.iceServers;
          if (session && !session.ended && session.pc) {
            try {
              session.pc.setConfiguration({ iceServers: account.iceServers });
            } catch (error) {
              // A configuration the browser cannot apply mid-call is kept
              // for the next connection only.
            }
          }
        }
        break;
      default:
        // Newer server frames are ignored, as the app does.
        break;
    }
  }

  function onSignedIn(data) {
    const details = data && typeof data === "object" ? data : {};
    account.signedIn = true;
    account.attempt = 0;
    clearInterval(account.countdown);
    account.iceServers = Array.isArray(details.iceServers) ? details.iceServers : [];
    setStatus(
      "online",
      `Signed in as ${account.username}${details.guest ? " (guest)" : ""}`,
    );
    const first = !account.everSignedIn;
    account.everSignedIn = true;
    render();
    if (first) ui.peerName.focus();
  }

  function onServerError(frame) {
    const text = typeof frame.data === "string" ? frame.data : "Unknown error";
    const code = frame.code;
    if (!account.signedIn && FATAL_SIGN_IN_ERRORS.has(code)) {
      const name = account.username;
      const messages = {
        username_taken: `The name ${name} is in use by another connection. Choose another name.`,
        wrong_credentials: `Wrong password for ${name}.`,
        invalid_username: `That name cannot be used: ${text}.`,
        guests_disabled: "This server admits registered names only. Enter your password.",
      };
      goOffline(messages[code]);
      ui.signInPanel.hidden = false;
      return;
    }
    if (code === "disconnected_by_admin") {
      goOffline(ADMIN_MESSAGE);
      return;
    }
    if (!account.signedIn) {
      // Signing in failed for a passing reason (the server is busy or
      // restarting): drop this socket and retry with the usual back-off.
      showNotice(`Could not sign in: ${text}. Retrying…`, "info");
      if (account.socket) account.socket.close(1000);
      return;
    }
    if (code === "target_not_found") {
      if (session && !session.ended && !session.open) {
        session.end(
          `${session.peer} is not online. Check the name, or ask them to open the app and sign in.`,
        );
      }
      // Otherwise a frame to someone who just left; PeerLeft says so.
      return;
    }
    showNotice(`The server reported a problem: ${text}`);
  }

  // ---- Requests ----------------------------------------------------------

  function requestConnection(peer) {
    if (peer === account.username) {
      showNotice("That is your own name. Enter the name of the person to connect to.");
      return;
    }
    if (!account.signedIn) {
      showNotice("You are offline. Wait until the page reconnects to the server.");
      return;
    }
    clearNotice();
    session = new Session(peer, "requester");
    sendSignal("StartConnection", peer);
    render();
  }

  function onRequest(from) {
    if (session && !session.ended && session.peer === from) {
      if (session.phase === "requesting") {
        // Both asked each other at once: the name that sorts first
        // accepts, so exactly one side makes the offer.
        if (account.username < from) session.becomeAcceptor();
        return;
      }
      // They ask again (a reloaded page): the old connection is gone.
      session.end(null);
    }
    if ((session && !session.ended) || incoming) {
      sendSignal("DeclineConnection", from, "Busy with another connection");
      return;
    }
    incoming = { from };
    ui.requestText.textContent = `${from} wants to connect with you.`;
    render();
    ui.acceptButton.focus();
  }

  function acceptRequest() {
    if (!incoming) return;
    const { from } = incoming;
    incoming = null;
    clearNotice();
    session = new Session(from, "acceptor");
    render();
  }

  function declineRequest() {
    if (!incoming) return;
    sendSignal("DeclineConnection", incoming.from, "Declined");
    incoming = null;
    render();
    ui.peerName.focus();
  }

  function onDecline(from, reason) {
    if (incoming && incoming.from === from) {
      incoming = null;
      render();
      showNotice(`${from} withdrew the request.`, "info");
      return;
    }
    if (!session || session.ended || session.peer !== from || session.open) return;
    let message;
    if (session.phase === "requesting") {
      message = `${from} declined your request.`;
      if (typeof reason === "string" && reason && reason.toLowerCase() !== "declined") {
        message += ` They said: “${reason.slice(0, 200)}”`;
      }
    } else {
      message = `${from} cancelled the connection.`;
    }
    session.end(message);
  }

  function onPeerLeft(from, reason) {
    if (incoming && incoming.from === from) {
      incoming = null;
      render();
      showNotice(`${from} went offline before you answered.`, "info");
    }
    if (session && !session.ended && session.peer === from) session.peerLeft(reason);
  }

  // ---- Descriptions and candidates in every form -------------------------

  function parseDescription(data, impliedType) {
    let value = data;
    if (typeof value === "string" && value.trimStart().startsWith("{")) {
      try {
        value = JSON.parse(value);
      } catch {
        // Not JSON after all: raw SDP.
      }
    }
    if (typeof value === "string") return { type: impliedType, sdp: value };
    if (value && typeof value === "object" && typeof value.sdp === "string") {
      return { type: impliedType, sdp: value.sdp };
    }
    return null;
  }

  function parseCandidates(data) {
    const decode = (value) => {
      if (typeof value !== "string") return value;
      try {
        return JSON.parse(value);
      } catch {
        return { candidate: value };
      }
    };
    const decoded = decode(data);
    const result = [];
    for (const item of Array.isArray(decoded) ? decoded.map(decode) : [decoded]) {
      if (!item || typeof item !== "object") continue;
      // Browsers call the line "candidate"; the app (org.webrtc) "sdp".
      const line = typeof item.candidate === "string" ? item.candidate : item.sdp;
      if (typeof line !== "string" || line === "") continue;
      const sdpMid = typeof item.sdpMid === "string" ? item.sdpMid : null;
      let sdpMLineIndex = Number.isInteger(item.sdpMLineIndex) ? item.sdpMLineIndex : null;
      if (sdpMid === null && sdpMLineIndex === null) sdpMLineIndex = 0;
      result.push({ candidate: line, sdpMid, sdpMLineIndex });
    }
    return result;
  }

  function appCandidate(candidate) {
    // The shape Gson gives an org.webrtc.IceCandidate, which the app parses.
    return JSON.stringify({
      sdpMid: candidate.sdpMid,
      sdpMLineIndex: candidate.sdpMLineIndex,
      sdp: candidate.candidate,
      serverUrl: "",
      adapterType: "UNKNOWN",
    });
  }

  // ---- One connection with one peer -------------------------------------

  class Session {
    constructor(peer, role) {
      this.peer = peer;
      this.role = role;
      this.phase = role === "requester" ? "requesting" : "connecting";
      // Perfect negotiation: on colliding offers the requester yields.
      this.polite = role === "requester";
      // "web" or "app"; on a channel this page created, "app" is a guess
      // until the peer shows which it is (identified).
      this.mode = "app";
      this.identified = false;
      this.onIdentified = [];
      this.helloTimer = null;
      this.open = false;
      this.ended = false;
      this.channel = null;
      this.makingOffer = false;
      this.ignoreOffer = false;
      this.pendingCandidates = [];
      this.signals = Promise.resolve();
      this.outgoing = [];
      this.sending = false;
      this.incomingFile = null;
      // Messages from the app being assembled, by messageId; ids of the
      // ones finished or given up, so late repeats are ignored.
      this.appIncoming = new Map();
      this.appFinished = new Set();
      // Every message the channel delivered to this page, to compare with
      // the connection's own count.
      this.delivered = { messages: 0, bytes: 0 };
      this.lost = { messages: 0, bytes: 0 };
      this.lossSnapshot = null;
      this.lossTimer = null;
      this.peerOffline = false;
      this.share = null;
      this.startedAt = performance.now();
      this.pc = this.createPeerConnection();
      addMessage("system", `— ${role === "requester" ? "Asking" : "Connecting with"} ${peer} —`);
      if (role === "requester") {
        this.requestTimer = setTimeout(() => {
          // Withdraw the request so their prompt does not linger.
          this.signal("DeclineConnection", "Cancelled");
          this.end(
            `${peer} did not answer within ${Math.round(config.requestTimeoutMs / 1000)} seconds. Try again later.`,
          );
        }, config.requestTimeoutMs);
      } else {
        this.becomeAcceptor();
      }
    }

    createPeerConnection() {
      const pc = new RTCPeerConnection({ iceServers: account.iceServers });
      pc.addEventListener("icecandidate", ({ candidate }) => {
        if (candidate && candidate.candidate) {
          this.signal("IceCandidates", appCandidate(candidate));
        }
      });
      pc.addEventListener("negotiationneeded", () => this.negotiate());
      pc.addEventListener("datachannel", ({ channel }) => {
        // The peer made this channel: a web client marks it with its
        // protocol, the app (label dataChannelLabel) never does.
        this.useChannel(channel);
        this.identify(channel.protocol === CHANNEL_PROTOCOL ? "web" : "app");
      });
      pc.addEventListener("track", (event) => this.showRemoteScreen(event));
      pc.addEventListener("connectionstatechange", () => this.connectionChanged());
      return pc;
    }

    becomeAcceptor() {
      clearTimeout(this.requestTimer);
      this.role = "acceptor";
      this.polite = false;
      this.phase = "connecting";
      this.startConnectTimer();
      // Like the app: the accepting side creates the channel, which makes
      // the connection need negotiating, and so sends the offer.
      this.useChannel(
        this.pc.createDataChannel(CHANNEL_LABEL, { protocol: CHANNEL_PROTOCOL }),
      );
      render();
    }

    startConnectTimer() {
      clearTimeout(this.connectTimer);
      this.connectTimer = setTimeout(() => {
        if (!this.open) {
          this.end(
            `Could not connect to ${this.peer} directly. Your networks may block direct connections.`,
          );
        }
      }, config.connectTimeoutMs);
    }

    signal(type, data) {
      if (!this.ended) sendSignal(type, this.peer, data);
    }

    async negotiate() {
      // In the app's flow only the accepting side opens negotiation.
      if (this.ended || (this.role === "requester" && !this.pc.remoteDescription)) return;
      try {
        this.makingOffer = true;
        await this.pc.setLocalDescription();
        const description = this.pc.localDescription;
        this.signal(description.type === "offer" ? "Offer" : "Answer", description.sdp);
      } catch (error) {
        this.end(`Could not set up the connection: ${error.message}`);
      } finally {
        this.makingOffer = false;
      }
    }

    receive(frame) {
      // One frame at a time: a candidate must not overtake its description.
      this.signals = this.signals
        .then(() => this.handleSignal(frame))
        .catch((error) => this.end(`Could not set up the connection: ${error.message}`));
    }

    async handleSignal(frame) {
      if (this.ended) return;
      if (frame.type === "IceCandidates") {
        for (const candidate of parseCandidates(frame.data)) await this.addCandidate(candidate);
        return;
      }
      const description = parseDescription(
        frame.data,
        frame.type === "Offer" ? "offer" : "answer",
      );
      if (!description) return;
      if (this.phase === "requesting") {
        if (description.type !== "offer") return;
        clearTimeout(this.requestTimer);
        this.phase = "connecting";
        this.startConnectTimer();
        render();
      }
      const collision =
        description.type === "offer" &&
        (this.makingOffer || this.pc.signalingState !== "stable");
      this.ignoreOffer = !this.polite && collision;
      if (this.ignoreOffer) return;
      await this.pc.setRemoteDescription(description);
      for (const candidate of this.pendingCandidates.splice(0)) {
        await this.addCandidate(candidate);
      }
      if (description.type === "offer") {
        await this.pc.setLocalDescription();
        this.signal("Answer", this.pc.localDescription.sdp);
      }
    }

    async addCandidate(candidate) {
      if (!this.pc.remoteDescription) {
        this.pendingCandidates.push(candidate);
        return;
      }
      try {
        await this.pc.addIceCandidate(candidate);
      } catch (error) {
        // Candidates of an ignored colliding offer are expected to fail.
        if (!this.ignoreOffer) console.warn("ICE candidate rejected", error);
      }
    }

    connectionChanged() {
      const state = this.pc.connectionState;
      if (this.ended) return;
      if (state === "failed") {
        const relay = account.iceServers.length
          ? ""
          : " This server hands out no relay (TURN) server to get around that.";
        this.end(
          `The direct connection to ${this.peer} failed. Your networks may block direct connections.${relay}`,
        );
      } else if (state === "disconnected" && this.peerOffline) {
        // Gone from the server and now unreachable directly: they left.
        this.end(`${this.peer} left the conversation.`);
      } else if (state === "disconnected" && this.open) {
        showNotice(`The connection to ${this.peer} was interrupted. Waiting for it to recover…`, "info");
      } else if (state === "connected" && ui.notice.dataset.kind === "info") {
        clearNotice();
      }
    }

    peerLeft(reason) {
      const direct = this.pc.connectionState === "connected";
      if (this.open && direct && this.channel.readyState === "open") {
        // Only their link to the server may have gone (a phone switching
        // networks): the direct connection lives on until it breaks too.
        this.peerOffline = true;
        addMessage("system", `${this.peer} lost their connection to the server; the direct connection stays open while it works.`);
        return;
      }
      this.end(
        reason === "replaced"
          ? `${this.peer} signed in somewhere else, so this connection ended.`
          : `${this.peer} went offline.`,
      );
    }

    // -- Data channel

    useChannel(channel) {
      if (this.channel) return;
      this.channel = channel;
      channel.binaryType = "arraybuffer";
      channel.bufferedAmountLowThreshold = config.lowWaterBytes;
      channel.addEventListener("open", () => this.channelOpened());
      channel.addEventListener("message", (event) => this.onMessage(event.data));
      channel.addEventListener("close", () => {
        if (!this.ended) this.end(`${this.peer} left the conversation.`);
      });
      if (channel.readyState === "open") this.channelOpened();
    }

    channelOpened() {
      if (this.open || this.ended) return;
      this.open = true;
      this.phase = "open";
      clearTimeout(this.connectTimer);
      stats.connectToOpenMs = Math.round(performance.now() - this.startedAt);
      if (this.identified) {
        this.greet();
      } else {
        // A web client says hello at once; the app never does.
        this.helloTimer = setTimeout(() => this.identify("app"), config.helloWaitMs);
      }
      this.lossTimer = setInterval(() => this.checkLoss(), config.appLossCheckMs);
      addMessage("system", `— Connected with ${this.peer} —`);
      render();
      ui.messageInput.focus();
    }

    identify(mode) {
      if (this.identified) return;
      this.identified = true;
      this.mode = mode;
      clearTimeout(this.helloTimer);
      if (this.open) this.greet();
      for (const callback of this.onIdentified.splice(0)) callback();
      render();
    }

    greet() {
      if (this.mode === "web" && this.role === "requester") {
        this.sendControl({ kind: "hello", version: 1 });
      }
    }

    whenIdentified(callback) {
      if (this.identified) callback();
      else this.onIdentified.push(callback);
    }

    sendControl(message) {
      // Only a web client reads these; the app ignores what is not HDR,
      // but nothing else is sent its way.
      if (this.mode === "web" && this.channel && this.channel.readyState === "open") {
        this.channel.send(JSON.stringify(message));
      }
    }

    onMessage(data) {
      this.delivered.messages += 1;
      this.delivered.bytes += typeof data === "string" ? utf8.encode(data).byteLength : data.byteLength;
      const webChunk =
        typeof data !== "string" && this.incomingFile && this.incomingFile.state === "active";
      const chunk = webChunk ? null : parseAppChunk(data);
      if (chunk) {
        // Only the app sends HDR chunks first; a web client says hello.
        this.identify("app");
        this.onAppChunk(chunk);
        return;
      }
      if (typeof data !== "string") {
        this.onChunk(data);
        return;
      }
      let message = null;
      if (data.startsWith("{")) {
        try {
          message = JSON.parse(data);
        } catch {
          message = null;
        }
      }
      if (message && typeof message === "object" && typeof message.kind === "string") {
        this.onControl(message);
      } else if (data !== "META_DATA_TEXT" && data !== "META_DATA_IMAGE") {
        // Neither format: show it rather than lose it (but not the markers
        // of the app's format before HDR, which no released build sends).
        addMessage("peer", data, this.peer);
      }
    }

    onControl(message) {
      switch (message.kind) {
        case "bye":
          this.end(`${this.peer} left the conversation.`);
          break;
        case "hello":
          // Late (a slow machine) it still counts: web clients read the
          // app's format too, so what was sent as to the app arrived.
          this.identify("web");
          this.mode = "web";
          render();
          break;
        case "text":
          if (typeof message.text === "string") addMessage("peer", message.text, this.peer);
          break;
        case "file":
          this.startIncoming(message);
          break;
        case "end":
          this.finishIncoming(message.id);
          break;
        case "done": {
          const transfer = transfers.get(`out:${message.id}`);
          if (transfer && transfer.session === this) transfer.delivered();
          break;
        }
        case "cancel":
          this.cancelledByPeer(message.id);
          break;
        case "screen":
          this.onScreenControl(message.state);
          break;
        default:
          break;
      }
    }

    // -- The Android app's format, received

    onAppChunk(chunk) {
      if (this.appFinished.has(chunk.id)) return;
      let entry = this.appIncoming.get(chunk.id);
      if (!entry) {
        entry = {
          id: chunk.id,
          type: chunk.type,
          total: chunk.total,
          flags: chunk.flags,
          parts: new Array(chunk.total),
          count: 0,
          bytes: 0,
          damaged: false,
          lastAt: 0,
          transfer: null,
        };
        this.appIncoming.set(chunk.id, entry);
        if (chunk.type !== "TEXT") {
          // The size is known only at the end: until then, the most it
          // can be.
          entry.transfer = new Transfer(this, {
            id: `app-${chunk.id}`,
            name: this.appFileName(entry),
            size: chunk.total * APP_CHUNK_BYTES,
            type: chunk.flags.mime,
            direction: "in",
          });
          entry.transfer.begin();
        }
      }
      // As the app does: a repeated index is ignored.
      if (chunk.total !== entry.total || chunk.type !== entry.type) return;
      if (entry.parts[chunk.index] !== undefined) return;
      let bytes = chunk.payload;
      if (chunk.fromString) {
        // A browser that replaces bytes it cannot decode (rather than
        // drop the message, as Chromium does) leaves U+FFFD: such a file
        // is damaged, and is never shown as received.
        if (entry.type !== "TEXT" && bytes.includes("\uFFFD")) entry.damaged = true;
        bytes = utf8.encode(bytes);
      }
      entry.parts[chunk.index] = bytes;
      entry.count += 1;
      entry.bytes += bytes.byteLength;
      entry.lastAt = performance.now();
      if (entry.transfer) entry.transfer.bytes = entry.bytes;
      if (entry.count === entry.total) this.finishAppMessage(entry);
    }

    appFileName(entry) {
      if (entry.flags.name) return safeFileName(entry.flags.name);
      const stamp = new Date().toISOString().replace(/[-:]/g, "").slice(0, 15);
      return `${entry.type.toLowerCase()}-${stamp}`;
    }

    finishAppMessage(entry) {
      this.appIncoming.delete(entry.id);
      this.appFinished.add(entry.id);
      if (entry.damaged) {
        this.failAppMessage(entry, "it arrived damaged");
        return;
      }
      if (entry.type === "TEXT") {
        addMessage("peer", new TextDecoder().decode(concat(entry.parts)), this.peer);
        return;
      }
      const sniffed = entry.parts[0] ? sniffImageType(entry.parts[0].slice(0, 12).buffer) : null;
      // Only well-known images keep a type (for the preview); anything
      // else is opaque bytes, never a page of this site.
      const type = entry.type === "IMAGE" && sniffed ? sniffed : "application/octet-stream";
      const transfer = entry.transfer;
      transfer.resize(entry.bytes);
      transfer.complete(new Blob(entry.parts, { type }));
    }

    failAppMessage(entry, why) {
      this.appIncoming.delete(entry.id);
      this.appFinished.add(entry.id);
      const what =
        entry.type === "TEXT"
          ? `A long message from ${this.peer}`
          : `${entry.transfer.name} from ${this.peer}`;
      const advice = entry.type === "TEXT" ? APP_TEXT_ADVICE : APP_FILE_ADVICE;
      if (entry.transfer) entry.transfer.fail(`Not received: ${why}.`);
      addMessage("system", `${what} could not be received: ${why}. ${advice}`);
    }

    async checkLoss() {
      // The connection counts every message it received; a browser drops
      // a string message whose bytes are not UTF-8 before the page sees
      // it (Chromium does), and the app sends file bytes as strings. A
      // count above the delivered one that outlasts a whole interval in
      // which nothing more was delivered (so no event was still queued)
      // is a loss.
      if (this.ended || !this.channel || this.mode === "web") return;
      let counted = null;
      try {
        (await this.pc.getStats()).forEach((report) => {
          if (report.type === "data-channel" && (counted === null || report.dataChannelIdentifier === this.channel.id)) {
            counted = report;
          }
        });
      } catch {
        return;
      }
      if (this.ended) return;
      const now = performance.now();
      const seen = this.delivered.messages + this.lost.messages;
      const previous = this.lossSnapshot;
      if (previous && previous.messages > seen && previous.delivered === this.delivered.messages) {
        const messages = previous.messages - seen;
        const bytes = Math.max(0, previous.bytes - this.delivered.bytes - this.lost.bytes);
        this.lost.messages += messages;
        this.lost.bytes += bytes;
        this.reportLoss(bytes);
      }
      this.lossSnapshot =
        counted && counted.messagesReceived > this.delivered.messages + this.lost.messages
          ? {
              messages: counted.messagesReceived,
              bytes: counted.bytesReceived,
              delivered: this.delivered.messages,
            }
          : null;
      for (const entry of Array.from(this.appIncoming.values())) {
        if (now - entry.lastAt > config.appStallMs) {
          this.failAppMessage(entry, "its parts stopped arriving");
        }
      }
    }

    reportLoss(bytes) {
      const incomplete = Array.from(this.appIncoming.values());
      const why = "the Android app sends pictures and files as text messages, and this browser throws away the parts that are not text";
      for (const entry of incomplete) this.failAppMessage(entry, why);
      if (!incomplete.length) {
        const size = bytes ? ` (about ${formatBytes(bytes)})` : "";
        addMessage(
          "system",
          `${this.peer} sent something this browser could not receive${size}: ${why}. ${APP_FILE_ADVICE}`,
        );
      }
    }

    // -- Sending

    sendText(text) {
      if (!this.open) return;
      addMessage("me", text, "You");
      this.whenIdentified(() => {
        if (this.ended || !this.open) return;
        if (this.mode === "web") {
          this.sendControl({ kind: "text", text });
          return;
        }
        // Binary chunks: a cut through a character would make a string
        // message invalid; the app reads the bytes either way.
        const bytes = utf8.encode(text);
        const id = randomUuid();
        const total = Math.max(1, Math.ceil(bytes.byteLength / APP_CHUNK_BYTES));
        for (let index = 0; index < total; index += 1) {
          const payload = bytes.subarray(index * APP_CHUNK_BYTES, (index + 1) * APP_CHUNK_BYTES);
          this.channel.send(appChunk(appHeader("TEXT", id, index, total, "0"), payload));
        }
      });
    }

    sendFiles(files) {
      this.whenIdentified(() => {
        for (const file of files) this.queueFile(file);
        this.pump();
      });
    }

    queueFile(file) {
      const name = safeFileName(file.name);
      const toApp = this.mode !== "web";
      if (toApp && file.size > config.appMaxBytes) {
        addMessage(
          "system",
          `${name} was not sent: at ${formatBytes(file.size)} it is more than the Android app can hold in a phone's memory (${formatBytes(config.appMaxBytes)} at most). Open this page in the phone's browser instead of the app: between two browsers larger files work.`,
        );
        return;
      }
      const transfer = new Transfer(this, {
        id: randomId(),
        name,
        size: file.size,
        type: file.type || "application/octet-stream",
        direction: "out",
        file,
      });
      if (toApp && file.size > config.appWarnBytes) {
        transfer.askFirst(
          `${formatBytes(file.size)} may be too big for a phone: the Android app holds a whole file in memory while it receives it, and a phone may stop the app before it is saved.`,
          () => {
            this.outgoing.push(transfer);
            this.pump();
          },
        );
        return;
      }
      this.outgoing.push(transfer);
    }

    chunkSize() {
      const limit = this.pc.sctp && this.pc.sctp.maxMessageSize;
      return Math.min(config.chunkSize, limit || config.chunkSize);
    }

    async pump() {
      if (this.sending) return;
      this.sending = true;
      try {
        while (this.outgoing.length && this.open) {
          const transfer = this.outgoing.shift();
          // Let most of the previous file leave first, so that this
          // file's clock and speed measure this file.
          if (this.channel.bufferedAmount > config.lowWaterBytes) {
            await drained(this.channel);
          }
          if (transfer.state === "queued" && this.open) await this.sendOne(transfer);
        }
      } finally {
        this.sending = false;
      }
    }

    async sendOne(transfer) {
      if (this.mode !== "web") {
        await this.sendOneToApp(transfer);
        return;
      }
      const channel = this.channel;
      const chunkSize = this.chunkSize();
      transfer.begin();
      this.sendControl({
        kind: "file",
        id: transfer.id,
        name: transfer.name,
        size: transfer.size,
        type: transfer.type,
      });
      try {
        for (let offset = 0; offset < transfer.size; ) {
          const piece = await transfer.file.slice(offset, offset + config.readSize).arrayBuffer();
          for (let at = 0; at < piece.byteLength; at += chunkSize) {
            if (channel.bufferedAmount > config.highWaterBytes) await drained(channel);
            if (transfer.state !== "active" || channel.readyState !== "open") return;
            const view = new Uint8Array(piece, at, Math.min(chunkSize, piece.byteLength - at));
            channel.send(view);
            transfer.handedOff += view.byteLength;
          }
          offset += piece.byteLength;
        }
      } catch (error) {
        transfer.fail(`Could not read the file: ${error.message}`);
        this.sendControl({ kind: "cancel", id: transfer.id });
        return;
      }
      this.sendControl({ kind: "end", id: transfer.id });
    }

    async sendOneToApp(transfer) {
      // The app's framing: TEXT, IMAGE, VIDEO or FILE by type, the type
      // and name in the flags, every chunk a (binary) message of its own.
      const channel = this.channel;
      const type = appTypeFor(transfer.type);
      const flags = appFlags(transfer.file.type, transfer.name);
      const id = randomUuid();
      const total = Math.max(1, Math.ceil(transfer.size / APP_CHUNK_BYTES));
      // Whole chunks per read, so only the last chunk is short.
      const readSize = Math.max(1, Math.floor(config.readSize / APP_CHUNK_BYTES)) * APP_CHUNK_BYTES;
      transfer.begin();
      let index = 0;
      try {
        do {
          const offset = index * APP_CHUNK_BYTES;
          const piece = new Uint8Array(
            await transfer.file.slice(offset, offset + readSize).arrayBuffer(),
          );
          if (!piece.byteLength && index > 0) throw new Error("it changed while being sent");
          for (let at = 0; at < piece.byteLength || index === 0; at += APP_CHUNK_BYTES) {
            if (channel.bufferedAmount > config.highWaterBytes) await drained(channel);
            if (transfer.state !== "active" || channel.readyState !== "open") return;
            const payload = piece.subarray(at, at + APP_CHUNK_BYTES);
            channel.send(appChunk(appHeader(type, id, index, total, flags), payload));
            transfer.handedOff += payload.byteLength;
            index += 1;
            if (index === total) break;
          }
        } while (index < total);
      } catch (error) {
        // The app keeps the chunks that came and waits for the rest.
        transfer.fail(`Could not read the file: ${error.message}`);
        return;
      }
      // Shown as sent once the channel's buffer has let it go.
      transfer.unconfirmed = true;
    }

    // -- Receiving

    startIncoming(header) {
      const valid =
        typeof header.id === "string" &&
        typeof header.name === "string" &&
        Number.isSafeInteger(header.size) &&
        header.size >= 0;
      if (!valid) return;
      if (this.incomingFile && this.incomingFile.state === "active") {
        this.incomingFile.fail("The sender started another file before finishing this one.");
      }
      const transfer = new Transfer(this, {
        id: header.id,
        name: safeFileName(header.name),
        size: header.size,
        type: typeof header.type === "string" ? header.type : "",
        direction: "in",
      });
      transfer.begin();
      this.incomingFile = transfer;
    }

    onChunk(buffer) {
      const transfer = this.incomingFile;
      // Chunks of a cancelled file may still be on their way: dropped.
      if (!transfer || transfer.state !== "active") return;
      transfer.chunks.push(buffer);
      transfer.bytes += buffer.byteLength;
      if (transfer.bytes > transfer.size) {
        transfer.fail("The sender sent more data than it announced.");
      }
    }

    finishIncoming(id) {
      const transfer = this.incomingFile;
      if (!transfer || transfer.id !== id || transfer.state !== "active") return;
      this.incomingFile = null;
      if (transfer.bytes !== transfer.size) {
        transfer.fail(`Incomplete: ${formatBytes(transfer.bytes)} of ${formatBytes(transfer.size)} arrived.`);
        return;
      }
      // Only well-known image types keep their type (for the preview);
      // anything else is opaque bytes, so a saved or opened file can never
      // run as a page of this site.
      const type = IMAGE_TYPES.has(transfer.type) ? transfer.type : "application/octet-stream";
      transfer.complete(new Blob(transfer.chunks, { type }));
      this.sendControl({ kind: "done", id });
    }

    cancelTransfer(transfer) {
      if (transfer.state === "confirm") {
        transfer.cancel("Not sent.");
        return;
      }
      if (transfer.state !== "active" && transfer.state !== "queued") return;
      const started = transfer.state === "active";
      transfer.cancel("Cancelled by you.");
      if (transfer.direction === "in" && transfer.id.startsWith("app-")) {
        // The app cannot be told: the rest of its chunks are ignored.
        const id = transfer.id.slice(4);
        this.appIncoming.delete(id);
        this.appFinished.add(id);
      }
      if (transfer.direction === "in" || started) {
        this.sendControl({ kind: "cancel", id: transfer.id });
      }
    }

    cancelledByPeer(id) {
      const transfer = transfers.get(`out:${id}`) || transfers.get(`in:${id}`);
      if (transfer && transfer.session === this) {
        transfer.cancel(`Cancelled by ${this.peer}.`);
      }
    }

    // -- Screen sharing

    async startSharing() {
      if (!navigator.mediaDevices || !navigator.mediaDevices.getDisplayMedia) {
        showNotice("This browser cannot share its screen.");
        return;
      }
      let stream;
      try {
        stream = await navigator.mediaDevices.getDisplayMedia({ video: true, audio: false });
      } catch (error) {
        showNotice(
          error.name === "NotAllowedError"
            ? "Screen sharing was cancelled or not allowed."
            : `Screen sharing failed: ${error.message}`,
        );
        return;
      }
      const [track] = stream.getVideoTracks();
      if (!this.open || this.share || !track) {
        stream.getTracks().forEach((t) => t.stop());
        return;
      }
      track.contentHint = "detail";
      // The browser's own "Stop sharing" button ends the track.
      track.addEventListener("ended", () => this.stopSharing(true));
      this.share = { stream, sender: this.pc.addTrack(track, stream) };
      this.sendControl({ kind: "screen", state: "started" });
      render();
    }

    stopSharing(notify) {
      if (!this.share) return;
      const { stream, sender } = this.share;
      this.share = null;
      stream.getTracks().forEach((t) => t.stop());
      if (!this.ended) {
        try {
          this.pc.removeTrack(sender);
        } catch {
          // The connection is closing anyway.
        }
        if (notify) this.sendControl({ kind: "screen", state: "stopped" });
      }
      render();
    }

    showRemoteScreen(event) {
      ui.remoteScreen.srcObject = event.streams[0] || new MediaStream([event.track]);
      ui.screenCaption.textContent = `${this.peer}'s screen`;
      ui.screenPanel.hidden = false;
    }

    hideRemoteScreen() {
      ui.screenPanel.hidden = true;
      ui.remoteScreen.srcObject = null;
    }

    stopViewing() {
      this.hideRemoteScreen();
      this.sendControl({ kind: "screen", state: "stop-requested" });
    }

    onScreenControl(state) {
      if (state === "started") {
        addMessage("system", `${this.peer} is sharing their screen.`);
      } else if (state === "stopped") {
        this.hideRemoteScreen();
        addMessage("system", `${this.peer} stopped sharing their screen.`);
      } else if (state === "stop-requested" && this.share) {
        this.stopSharing(true);
        addMessage("system", `${this.peer} closed your shared screen, so sharing stopped.`);
      }
    }

    // -- The end

    end(message, kind = "error") {
      if (this.ended) return;
      this.ended = true;
      clearTimeout(this.requestTimer);
      clearTimeout(this.connectTimer);
      clearTimeout(this.helloTimer);
      clearInterval(this.lossTimer);
      for (const transfer of transfers.values()) {
        if (transfer.session === this) transfer.fail(`Stopped: ${message || "you disconnected."}`);
      }
      this.stopSharing(false);
      this.hideRemoteScreen();
      try {
        if (this.channel) this.channel.close();
        this.pc.close();
      } catch {
        // Already closed.
      }
      addMessage("system", `— ${this.open ? "Disconnected from" : "No connection with"} ${this.peer} —`);
      if (message) showNotice(message, kind);
      render();
    }

    hangUp() {
      if (!this.open) {
        // Tell the other side the request or offer is void.
        this.signal("DeclineConnection", "Cancelled");
      }
      this.end(null);
      ui.peerName.focus();
    }
  }

  function drained(channel) {
    return new Promise((resolve) => {
      const done = () => {
        channel.removeEventListener("bufferedamountlow", done);
        channel.removeEventListener("close", done);
        resolve();
      };
      channel.addEventListener("bufferedamountlow", done);
      channel.addEventListener("close", done);
    });
  }

  // ---- Transfers and their progress -------------------------------------

  const transfers = new Map();
  let ticker = null;

  class Transfer {
    constructor(owner, { id, name, size, type, direction, file = null }) {
      Object.assign(this, { session: owner, id, name, size, type, direction, file });
      this.peer = owner.peer;
      this.state = "queued";
      this.bytes = 0;
      this.handedOff = 0;
      this.unconfirmed = false;
      this.chunks = [];
      this.samples = [];
      this.blob = null;
      this.note = "";
      this.startedAt = 0;
      this.finishedAt = 0;
      transfers.set(`${direction}:${id}`, this);
      this.element = this.build();
      ui.transfers.prepend(this.element);
      ui.history.hidden = false;
      this.update();
    }

    build() {
      const label = this.direction === "out" ? `To ${this.peer}` : `From ${this.peer}`;
      this.progress = el("progress", {
        max: String(Math.max(this.size, 1)),
        value: "0",
        "aria-label": `${label}: ${this.name}`,
      });
      this.detail = el("span", { class: "detail", "aria-live": "off" });
      this.sizeLabel = el("span", { class: "size", text: `${label} · ${formatBytes(this.size)}` });
      this.actions = el("span", { class: "row" });
      this.cancelButton = el("button", {
        type: "button",
        class: "secondary cancel",
        "aria-label": `Cancel ${this.name}`,
        text: "Cancel",
        onclick: () => this.session.cancelTransfer(this),
      });
      this.actions.append(this.cancelButton);
      return el(
        "li",
        { class: "transfer", dataset: { id: this.id, direction: this.direction } },
        el(
          "div",
          { class: "row spread" },
          el("span", { class: "name", text: this.name }),
          this.sizeLabel,
        ),
        this.progress,
        el("div", { class: "row spread" }, this.detail, this.actions),
      );
    }

    askFirst(warning, proceed) {
      // Held until the person decides; Cancel (already there) declines.
      this.state = "confirm";
      this.note = `${warning} Send anyway?`;
      this.actions.prepend(
        el("button", {
          type: "button",
          class: "send-anyway",
          text: "Send anyway",
          onclick: (event) => {
            event.currentTarget.remove();
            if (this.state !== "confirm") return;
            this.state = "queued";
            this.update();
            proceed();
          },
        }),
      );
      this.update();
    }

    resize(size) {
      this.size = size;
      this.progress.max = String(Math.max(size, 1));
      const label = this.direction === "out" ? `To ${this.peer}` : `From ${this.peer}`;
      this.sizeLabel.textContent = `${label} · ${formatBytes(size)}`;
    }

    begin() {
      this.state = "active";
      this.startedAt = performance.now();
      this.samples = [[this.startedAt, 0]];
      if (!ticker) ticker = setInterval(tick, 250);
      this.update();
    }

    measure() {
      if (this.direction === "out" && this.state === "active") {
        const queued = this.session.channel ? this.session.channel.bufferedAmount : 0;
        this.bytes = Math.max(this.bytes, this.handedOff - queued);
        if (this.unconfirmed && this.bytes >= this.size) this.sentUnconfirmed();
      }
      const now = performance.now();
      this.samples.push([now, this.bytes]);
      // Speed over the last three seconds: steady, yet quick to follow.
      while (this.samples.length > 2 && now - this.samples[0][0] > 3000) this.samples.shift();
    }

    speed() {
      const [t0, b0] = this.samples[0];
      const [t1, b1] = this.samples[this.samples.length - 1];
      return t1 - t0 > 200 ? ((b1 - b0) * 1000) / (t1 - t0) : 0;
    }

    update() {
      const percent = this.size ? Math.floor((this.bytes * 100) / this.size) : this.state === "done" ? 100 : 0;
      this.progress.value = Math.min(this.bytes, this.size);
      this.element.dataset.state = this.state;
      this.element.dataset.percent = String(percent);
      const seconds = (this.finishedAt - this.startedAt) / 1000;
      const rate = seconds > 0 ? `${formatBytes(this.size / seconds)}/s` : "";
      let text;
      switch (this.state) {
        case "queued":
          text = "Waiting for the files before it…";
          break;
        case "confirm":
          text = this.note;
          break;
        case "active": {
          const speed = this.speed();
          text = `${percent} %`;
          if (speed > 0) {
            text += ` · ${formatBytes(speed)}/s · ${formatDuration((this.size - this.bytes) / speed)} left`;
          }
          break;
        }
        case "done":
          if (this.unconfirmed) text = "Sent (the Android app does not confirm receipt).";
          else {
            text = `${this.direction === "out" ? "Delivered" : "Received"} in ${formatDuration(seconds)}`;
            if (rate) text += ` (${rate})`;
          }
          break;
        default:
          text = this.note;
      }
      this.detail.textContent = text;
      this.cancelButton.hidden = !["active", "queued", "confirm"].includes(this.state);
    }

    finish(state, note = "") {
      this.state = state;
      this.note = note;
      this.finishedAt = performance.now();
      this.update();
    }

    delivered() {
      if (this.state !== "active") return;
      this.bytes = this.size;
      this.finish("done");
    }

    sentUnconfirmed() {
      this.bytes = this.size;
      this.finish("done");
    }

    complete(blob) {
      this.blob = blob;
      this.chunks = [];
      this.bytes = this.size;
      this.finish("done");
      const url = URL.createObjectURL(blob);
      this.actions.append(
        el("a", { class: "button save", href: url, download: this.name, text: "Save" }),
      );
      if (IMAGE_TYPES.has(blob.type)) {
        this.element.append(el("img", { src: url, alt: `${this.name} from ${this.peer}` }));
      }
    }

    fail(reason) {
      if (!["active", "queued", "confirm"].includes(this.state)) return;
      this.chunks = [];
      this.finish("failed", reason);
    }

    cancel(reason) {
      if (!["active", "queued", "confirm"].includes(this.state)) return;
      const button = this.actions.querySelector(".send-anyway");
      if (button) button.remove();
      this.chunks = [];
      this.finish("cancelled", reason);
    }
  }

  function tick() {
    let active = false;
    for (const transfer of transfers.values()) {
      if (transfer.state === "active") {
        transfer.measure();
        transfer.update();
        active = true;
      }
    }
    if (!active) {
      clearInterval(ticker);
      ticker = null;
    }
  }

  // ---- Page state -------------------------------------------------------

  function render() {
    const live = session && !session.ended ? session : null;
    ui.signInPanel.hidden = account.wantOnline;
    ui.connectPanel.hidden = !account.wantOnline || live !== null;
    ui.connectButton.disabled = !account.signedIn;
    ui.requestPanel.hidden = incoming === null;
    ui.sessionPanel.hidden = live === null;
    if (!live) return;
    ui.sessionTitle.textContent = live.peer;
    const states = {
      requesting: `Waiting for ${live.peer} to accept…`,
      connecting: `Connecting directly to ${live.peer}…`,
      open: `Connected directly to ${live.peer}.`,
    };
    ui.sessionState.textContent = states[live.phase] || "";
    ui.hangUpButton.textContent = live.open ? "Disconnect" : "Cancel";
    ui.sessionTools.hidden = !live.open;
    const web = live.mode === "web";
    ui.shareButton.hidden = !web;
    ui.shareButton.disabled = live.share !== null;
    ui.sharingState.hidden = live.share === null;
    ui.appPeerHint.hidden = web || !live.identified;
    ui.appWarnSize.textContent = formatBytes(config.appWarnBytes);
  }

  ui.signInForm.addEventListener("submit", (event) => {
    event.preventDefault();
    const name = ui.username.value.trim();
    if (name) signIn(name, ui.password.value);
  });
  ui.connectForm.addEventListener("submit", (event) => {
    event.preventDefault();
    const name = ui.peerName.value.trim();
    if (name) requestConnection(name);
  });
  ui.signOutButton.addEventListener("click", () => goOffline(null));
  ui.acceptButton.addEventListener("click", acceptRequest);
  ui.declineButton.addEventListener("click", declineRequest);
  ui.requestPanel.addEventListener("keydown", (event) => {
    if (event.key === "Escape") declineRequest();
  });
  ui.hangUpButton.addEventListener("click", () => session && session.hangUp());
  ui.messageForm.addEventListener("submit", (event) => {
    event.preventDefault();
    const text = ui.messageInput.value;
    if (text && session && session.open && !session.ended) {
      session.sendText(text);
      ui.messageInput.value = "";
    }
  });
  ui.fileInput.addEventListener("change", () => {
    if (session && session.open && !session.ended && ui.fileInput.files.length) {
      session.sendFiles(Array.from(ui.fileInput.files));
    }
    ui.fileInput.value = "";
  });
  ui.shareButton.addEventListener("click", () => session && session.startSharing());
  ui.stopSharingButton.addEventListener("click", () => session && session.stopSharing(true));
  ui.stopViewingButton.addEventListener("click", () => session && session.stopViewing());
  ui.noticeClose.addEventListener("click", clearNotice);

  // A closing tab tells its peer at once; otherwise the peer would notice
  // only when the connection times out, many seconds later.
  window.addEventListener("pagehide", () => {
    if (session && !session.ended) {
      // The app's parser would take an unknown message as a marker.
      if (session.mode === "web") session.sendControl({ kind: "bye" });
      session.end(null);
    }
  });

  // For tests and troubleshooting from the console.
  window.p2p = {
    config,
    stats,
    files: () =>
      Array.from(transfers.values(), (t) => ({
        id: t.id,
        direction: t.direction,
        name: t.name,
        size: t.size,
        bytes: t.bytes,
        state: t.state,
        note: t.note,
        seconds: t.finishedAt ? (t.finishedAt - t.startedAt) / 1000 : null,
        blob: t.direction === "out" ? t.file : t.blob,
      })),
  };

  render();
  ui.username.focus();
})();
