// Remote control of a shared screen (docs/signaling.md: remote_control_*).
//
// Anyone can ask for control of a screen another attendee shares; the sharer allows or declines; while
// allowed, the controller's pointer over the shared screen's tile travels on the subscribe connection's
// `convene` data channel, through the server, to the sharer's. A browser cannot move the sharer's real
// pointer: the sharer's app shows where the controller points on its own screen preview (a native client
// can act on the same events). Refusals (the sharer's organisation disables shared control, nobody is
// sharing, someone already controls) come back as `error` `remote_control_unavailable` and show in the
// banner like every server error.
//
// Events on the channel are JSON: {"kind": "pointer" | "click", "x": 0..1, "y": 0..1}, coordinates as
// fractions of the shared screen.

const CHANNEL_LABEL = "convene";
/** Pointer moves are sent at most this often (ms): a few kbps, far under the flow's 800 kbps. */
const POINTER_INTERVAL_MS = 40;
/** How many received events the test hook keeps. */
const KEEP_RECEIVED = 100;

export class RemoteControl {
  /**
   * @param {object} opts
   * @param {import("./meeting.js").Meeting} opts.meeting a joined meeting
   * @param {HTMLElement} opts.panel where the controls render
   */
  constructor({ meeting, panel }) {
    this.meeting = meeting;
    this.panel = panel;
    this.session = null; // {sharerId, controllerId} while anyone in the meeting controls a screen
    this.requests = []; // [{attendee_id, name}] asking us (the sharer) for control
    this.channel = null;
    this.received = []; // events received as the sharer (test hook)
    this.sent = 0;
    this.capture = null; // {figure, listeners} while we control someone's screen
    this.lastPointerAt = 0;
    this.notice = ""; // the last thing to tell the user (a declined request)
    this.rendered = null; // what the panel shows now, to rebuild it only when that changes

    const sig = meeting.sig;
    sig.on("remote_control_request", (m) => {
      this.requests = this.requests.filter((r) => r.attendee_id !== m.attendee_id);
      this.requests.push({ attendee_id: m.attendee_id, name: m.name });
      this.render();
    });
    sig.on("remote_control_declined", (m) => {
      this.notice = `${this._name(m.attendee_id)} declined your request for control.`;
      this.render();
    });
    sig.on("remote_control", (m) => {
      this.session = m.active ? { sharerId: m.sharer_id, controllerId: m.controller_id } : null;
      this.notice = "";
      if (!m.active) this.requests = [];
      this._updateCapture();
      this.render();
    });
    if (meeting.dataChannel) this.attachChannel(meeting.dataChannel);
    this.render();
  }

  /** The subscribe connection's data channel (the server opens it). */
  attachChannel(channel) {
    if (channel.label !== CHANNEL_LABEL) return;
    this.channel = channel;
    channel.binaryType = "arraybuffer";
    channel.addEventListener("message", (ev) => this._onData(ev.data));
  }

  get controlling() {
    return Boolean(this.session && this.session.controllerId === this.meeting.attendeeId);
  }

  get controlled() {
    return Boolean(this.session && this.session.sharerId === this.meeting.attendeeId);
  }

  request(attendeeId) {
    this.meeting.sig.send({ type: "remote_control_request", attendee_id: attendeeId });
  }

  answer(attendeeId, granted) {
    this.requests = this.requests.filter((r) => r.attendee_id !== attendeeId);
    this.meeting.sig.send({ type: "remote_control_answer", attendee_id: attendeeId, granted });
    this.render();
  }

  stop() {
    this.meeting.sig.send({ type: "remote_control_stop" });
  }

  /** Sends one event to the sharer; false if there is no open channel. */
  send(event) {
    if (!this.controlling || !this.channel || this.channel.readyState !== "open") return false;
    this.channel.send(JSON.stringify(event));
    this.sent += 1;
    return true;
  }

  close() {
    this._release();
    this.panel.replaceChildren();
    this.panel.hidden = true;
  }

  // ---------------------------------------------------------------- internals

  _name(attendeeId) {
    if (attendeeId === this.meeting.attendeeId) return "You";
    return this.meeting.attendees.get(attendeeId)?.name || "Someone";
  }

  /** Others sharing a screen now (from the subscribe track list). */
  _sharers() {
    const ids = new Set(
      this.meeting.tracks.filter((t) => t.source === "screen").map((t) => t.attendee_id),
    );
    return [...ids].filter((id) => this.meeting.attendees.has(id));
  }

  _onData(data) {
    let event;
    try {
      const text = typeof data === "string" ? data : new TextDecoder().decode(data);
      event = JSON.parse(text);
    } catch {
      return; // not ours to understand
    }
    if (!event || typeof event.x !== "number" || typeof event.y !== "number") return;
    this.received.push({ kind: String(event.kind), x: event.x, y: event.y });
    if (this.received.length > KEEP_RECEIVED) this.received.shift();
    this._showPointer(event);
  }

  /** Shows where the controller points, on our own screen preview. */
  _showPointer(event) {
    const figure = document.querySelector('figure.tile[data-self="1"][data-source="screen"]');
    if (!figure) return;
    let dot = figure.querySelector(".remote-pointer");
    if (!dot) {
      dot = document.createElement("span");
      dot.className = "remote-pointer";
      dot.setAttribute("aria-hidden", "true");
      Object.assign(dot.style, {
        position: "absolute", width: "14px", height: "14px", borderRadius: "50%",
        background: "rgba(230, 60, 60, 0.85)", pointerEvents: "none", transform: "translate(-50%, -50%)",
      });
      figure.style.position = "relative";
      figure.append(dot);
    }
    dot.style.left = `${Math.min(1, Math.max(0, event.x)) * 100}%`;
    dot.style.top = `${Math.min(1, Math.max(0, event.y)) * 100}%`;
    if (event.kind === "click") {
      dot.animate?.([{ transform: "translate(-50%, -50%) scale(1.8)" }, { transform: "translate(-50%, -50%)" }], 250);
    }
  }

  /** While we control someone, our pointer over their screen tile goes to them. */
  _updateCapture() {
    this._release();
    if (!this.controlling) return;
    const sharer = this.session.sharerId;
    const figure = document.querySelector(`figure.tile[data-attendee-id="${sharer}"][data-source="screen"]`);
    if (!figure) return;
    const where = (ev) => {
      const video = figure.querySelector("video") || figure;
      const r = video.getBoundingClientRect();
      return { x: (ev.clientX - r.left) / Math.max(1, r.width), y: (ev.clientY - r.top) / Math.max(1, r.height) };
    };
    const move = (ev) => {
      const now = performance.now();
      if (now - this.lastPointerAt < POINTER_INTERVAL_MS) return;
      this.lastPointerAt = now;
      this.send({ kind: "pointer", ...where(ev) });
    };
    const click = (ev) => this.send({ kind: "click", ...where(ev) });
    figure.addEventListener("pointermove", move);
    figure.addEventListener("click", click);
    figure.classList.add("controlling");
    this.capture = { figure, move, click };
  }

  _release() {
    if (!this.capture) return;
    const { figure, move, click } = this.capture;
    figure.removeEventListener("pointermove", move);
    figure.removeEventListener("click", click);
    figure.classList.remove("controlling");
    this.capture = null;
  }

  /** Rebuilds the panel when what it shows changed (the app calls this on every state change). */
  render() {
    const sharers = this.session ? [] : this._sharers();
    const key = JSON.stringify([this.session, this.requests, sharers, this.notice,
      sharers.map((id) => this._name(id))]);
    if (key === this.rendered) return;
    this.rendered = key;
    const items = [];
    const button = (text, id, onClick) => {
      const b = document.createElement("button");
      b.type = "button";
      b.textContent = text;
      b.dataset.action = id;
      b.addEventListener("click", onClick);
      return b;
    };
    const line = (text, ...buttons) => {
      const p = document.createElement("p");
      p.className = "remote-control-line";
      p.append(text, ...buttons);
      return p;
    };
    if (this.session) {
      const { sharerId, controllerId } = this.session;
      const text = `${this._name(controllerId)} ${controllerId === this.meeting.attendeeId ? "are" : "is"} controlling ${
        sharerId === this.meeting.attendeeId ? "your" : `${this._name(sharerId)}'s`} screen. `;
      const mine = this.controlling || this.controlled;
      items.push(line(text, ...(mine ? [button("Stop control", "stop-control", () => this.stop())] : [])));
    } else {
      for (const r of this.requests) {
        items.push(line(`${r.name} asks to control your screen. `,
          button("Allow", "allow-control", () => this.answer(r.attendee_id, true)),
          button("Decline", "decline-control", () => this.answer(r.attendee_id, false))));
      }
      if (this.notice) items.push(line(this.notice));
      for (const id of sharers) {
        items.push(line("", button(`Request control of ${this._name(id)}'s screen`, "request-control",
          () => this.request(id))));
      }
    }
    this.panel.replaceChildren(...items);
    this.panel.hidden = items.length === 0;
  }
}
