// WebSocket signaling client for Convene (`/v1/signal`, see docs/signaling.md).
//
// One instance is one socket is one attendee. Every message is a JSON object
// in a text frame. Incoming messages are dispatched to handlers registered
// with `on(type, fn)`; `on("*", fn)` sees every message.

export function signalUrl(loc = window.location) {
  const scheme = loc.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${loc.host}/v1/signal`;
}

export class Signaling {
  constructor(url) {
    this.url = url;
    this.ws = null;
    this.handlers = new Map();
    this.closeHandlers = [];
    this.closed = false;
  }

  /** Opens the socket; resolves once open, rejects if it fails to open. */
  open() {
    return new Promise((resolve, reject) => {
      let opened = false;
      const ws = new WebSocket(this.url);
      this.ws = ws;
      ws.addEventListener("open", () => {
        opened = true;
        resolve();
      });
      ws.addEventListener("message", (ev) => this._onMessage(ev));
      ws.addEventListener("close", (ev) => {
        this.closed = true;
        if (!opened) {
          reject(new Error(`could not connect to ${this.url} (close code ${ev.code})`));
          return;
        }
        for (const fn of this.closeHandlers) fn(ev);
      });
      // An "error" event is always followed by "close"; the close handler reports it.
    });
  }

  on(type, fn) {
    if (!this.handlers.has(type)) this.handlers.set(type, []);
    this.handlers.get(type).push(fn);
  }

  onClose(fn) {
    this.closeHandlers.push(fn);
  }

  /** Resolves with the first message whose type is in `types`. */
  next(types) {
    return new Promise((resolve, reject) => {
      const wanted = new Set(types);
      const onClose = (ev) => {
        this.off("*", fn);
        reject(new Error(`signaling socket closed (code ${ev.code}${ev.reason ? `: ${ev.reason}` : ""})`));
      };
      const fn = (msg) => {
        if (!wanted.has(msg.type)) return;
        this.off("*", fn);
        const i = this.closeHandlers.indexOf(onClose);
        if (i >= 0) this.closeHandlers.splice(i, 1);
        resolve(msg);
      };
      this.on("*", fn);
      this.onClose(onClose);
    });
  }

  off(type, fn) {
    const list = this.handlers.get(type);
    if (!list) return;
    const i = list.indexOf(fn);
    if (i >= 0) list.splice(i, 1);
  }

  send(msg) {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) {
      throw new Error(`cannot send "${msg.type}": signaling socket is not open`);
    }
    this.ws.send(JSON.stringify(msg));
  }

  close(code = 1000, reason = "") {
    if (this.ws && this.ws.readyState <= WebSocket.OPEN) this.ws.close(code, reason);
  }

  _onMessage(ev) {
    if (typeof ev.data !== "string") {
      console.warn("convene: ignoring binary signaling frame");
      return;
    }
    let msg;
    try {
      msg = JSON.parse(ev.data);
    } catch (e) {
      console.warn("convene: ignoring non-JSON signaling frame", ev.data);
      return;
    }
    if (!msg || typeof msg !== "object" || typeof msg.type !== "string") {
      console.warn("convene: ignoring signaling message without type", msg);
      return;
    }
    // Copy the lists: a handler may unregister itself while we iterate.
    for (const fn of [...(this.handlers.get("*") || [])]) fn(msg);
    for (const fn of [...(this.handlers.get(msg.type) || [])]) fn(msg);
  }
}
