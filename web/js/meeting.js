// One meeting session: the signaling socket plus the two peer connections
// described in docs/signaling.md.
//
//   publish PC   - we offer; sendonly transceivers for audio, camera and
//                  (while sharing) screen.
//   subscribe PC - the server offers; we answer; carries everyone else.
//
// Negotiation is serialized on both: at most one publish_offer is in flight
// (later changes are folded into the next offer), and subscribe_offers are
// answered one by one, in order, exactly once each.

import { Signaling } from "./signaling.js";

const PING_INTERVAL_MS = 20000;
const PUBLISH_ERROR_CODES = new Set(["bad_sdp", "invalid_field", "negotiation_in_progress", "bad_message"]);

/** Reorders video codecs: H.264 constrained baseline (packetization-mode 1) first, then VP8, then the rest. */
export function preferredVideoCodecs(codecs) {
  const fmtp = (c) => (c.sdpFmtpLine || "").toLowerCase();
  const isH264Cb = (c) => c.mimeType.toLowerCase() === "video/h264"
    && /packetization-mode=1/.test(fmtp(c)) && /profile-level-id=42e01f/.test(fmtp(c));
  const isVp8 = (c) => c.mimeType.toLowerCase() === "video/vp8";
  const first = codecs.filter(isH264Cb);
  const second = codecs.filter(isVp8);
  const rest = codecs.filter((c) => !isH264Cb(c) && !isVp8(c));
  return [...first, ...second, ...rest];
}

function applyCodecPreferences(transceiver) {
  if (typeof transceiver.setCodecPreferences !== "function") return false;
  // Browsers disagree on whether sender or receiver capabilities are the
  // reference for setCodecPreferences; try both and fall back gracefully.
  for (const cls of [window.RTCRtpReceiver, window.RTCRtpSender]) {
    const caps = cls && typeof cls.getCapabilities === "function" ? cls.getCapabilities("video") : null;
    if (!caps || !caps.codecs) continue;
    try {
      transceiver.setCodecPreferences(preferredVideoCodecs(caps.codecs));
      return true;
    } catch (e) {
      console.warn("convene: setCodecPreferences failed", e);
    }
  }
  return false;
}

// Camera simulcast layers, lowest first. The weights split a ceiling roughly as pixels^0.8 (bits per pixel
// fall as resolution rises); a layer whose share would fall under its minimum is not sent at all, since a
// starved 640x360 looks worse than a clean 320x180. A layer's rate depends only on the ceiling, never on
// which layers the receivers use: the server picks layers by their measured rate, so a layer that grew when
// another went off would push its receivers down a layer, and so on.
export const CAMERA_LAYERS = [
  { rid: "q", scaleResolutionDownBy: 4, weight: 1, minKbps: 30, maxKbps: 150 },
  { rid: "h", scaleResolutionDownBy: 2, weight: 2, minKbps: 80, maxKbps: 400 },
  { rid: "f", scaleResolutionDownBy: 1, weight: 6, minKbps: 150, maxKbps: Infinity },
];
// How many of those layers a capture gets, by its height: libwebrtc encodes at most 3 simulcast streams
// from 960x540 up, 2 from 640x360 and 1 below (it silently drops the rest), so ask for just those, keeping
// the top ones (f, or h+f). 640x360, the app's usual capture, sends h (320x180) and f.
const SIMULCAST_HEIGHTS = [[540, 3], [360, 2]];
// The 1:1 tier, used until the server's first publish_targets.
const DEFAULT_CAMERA_KBPS = 650;

/**
 * Splits a camera's ceiling (kbps, the total of all its layers) over its simulcast `layers` (lowest first):
 * one share per layer, 0 for a layer the ceiling cannot carry (from the top down; the lowest always takes
 * what there is). Lower layers are capped at their maxKbps and the highest layer sent takes the rest, so
 * the shares add up to the ceiling. For h+f: 650 -> 162+487, 450 -> 112+337, 184 -> 184 on h alone.
 */
export function splitCeiling(totalKbps, layers = CAMERA_LAYERS) {
  for (let used = layers.length; used > 1; used--) {
    const sent = layers.slice(0, used);
    const weights = sent.reduce((sum, l) => sum + l.weight, 0);
    const shares = sent.map((l) => (totalKbps * l.weight) / weights);
    let excess = 0;
    for (let i = 0; i < used - 1; i++) {
      excess += Math.max(0, shares[i] - sent[i].maxKbps);
      shares[i] = Math.min(shares[i], sent[i].maxKbps);
    }
    shares[used - 1] += excess;
    if (shares.every((kbps, i) => kbps >= sent[i].minKbps)) {
      return layers.map((_, i) => (i < used ? Math.floor(shares[i]) : 0));
    }
  }
  return layers.map((_, i) => (i === 0 ? Math.max(0, Math.floor(totalKbps)) : 0));
}

/** The layers of CAMERA_LAYERS a sender's encodings carry, lowest first. */
function layersOf(encodings) {
  return CAMERA_LAYERS.filter((l) => encodings.some((e) => e.rid === l.rid));
}

/** The camera's sendEncodings: simulcast layers for a large enough capture, else null (one encoding). */
function cameraEncodings(track) {
  const { height } = track.getSettings();
  const count = (SIMULCAST_HEIGHTS.find(([min]) => height >= min) || [0, 1])[1];
  if (count < 2) return null;
  const layers = CAMERA_LAYERS.slice(CAMERA_LAYERS.length - count);
  const shares = splitCeiling(DEFAULT_CAMERA_KBPS, layers);
  return layers.map((l, i) => ({
    rid: l.rid,
    scaleResolutionDownBy: l.scaleResolutionDownBy,
    maxBitrate: shares[i] * 1000,
    active: shares[i] > 0,
  }));
}

/**
 * Applies a publish_targets entry to a sender's encodings (in place). One encoding: the ceiling is its
 * maxBitrate. Simulcast: the ceiling is split over the layers (splitCeiling) and every layer the ceiling
 * carries is sent. max_kbps 0 (the meeting's camera limit is reached) switches everything off.
 *
 * active_rids is not used to switch layers off (the protocol makes it optional). Tried: a layer switched
 * off has to be restarted (a new keyframe, a reconfigured encoder) before a subscriber whose link recovered
 * can climb back to it: behind a slow link that recovers (tests/e2e/test_constrained_link.py), three runs
 * in six then took over 15 s or froze the picture for over a second climbing back, and a late joiner
 * waited for the restart too.
 * Sending every layer the ceiling carries costs uplink, not picture.
 */
export function applyTarget(encodings, target) {
  if (encodings.length === 1 && !encodings[0].rid) {
    encodings[0].active = target.max_kbps > 0;
    if (target.max_kbps > 0) encodings[0].maxBitrate = target.max_kbps * 1000;
    return;
  }
  const layers = layersOf(encodings);
  const shares = splitCeiling(target.max_kbps, layers);
  for (const enc of encodings) {
    const i = layers.findIndex((l) => l.rid === enc.rid);
    const share = i >= 0 ? shares[i] : 0;
    enc.active = share > 0;
    if (share > 0) enc.maxBitrate = share * 1000;
  }
}

/** Adds usedtx=1 to the Opus fmtp line (the server asks for DTX). */
export function enableOpusDtx(sdp) {
  const m = /a=rtpmap:(\d+) opus\/48000/i.exec(sdp);
  if (!m) return sdp;
  const pt = m[1];
  const re = new RegExp(`^(a=fmtp:${pt} )(.*)$`, "m");
  if (re.test(sdp)) {
    return sdp.replace(re, (line, head, params) =>
      /(^|;)\s*usedtx=/.test(params) ? line : `${head}${params};usedtx=1`);
  }
  return sdp.replace(m[0], `${m[0]}\r\na=fmtp:${pt} usedtx=1`);
}

export class Meeting {
  /**
   * @param {object} opts
   * @param {string} opts.url        signaling URL
   * @param {MediaStream} opts.stream local mic/camera (may have 0..2 tracks)
   * @param {object} opts.ui          { tiles: TileGrid, banner: Banner, audioSink: Element, onChange() }
   */
  constructor({ url, stream, ui }) {
    this.url = url;
    this.stream = stream;
    this.ui = ui;
    this.state = "idle"; // idle | joining | joined | left | error
    this.meetingId = null;
    this.name = null;
    this.attendeeId = null;
    this.attendees = new Map(); // attendee_id -> attendee (others only)
    this.departed = new Set(); // attendee_ids that left (ignore stale subscribe tracks for them)
    this.sig = null;
    this.pubPc = null;
    this.subPc = null;
    // The subscribe connection's `convene` data channel (the server opens it), and who wants it.
    this.dataChannel = null;
    this.onDataChannel = null;
    this.tracks = []; // the latest subscribe_offer's track list, once answered
    this.self = { audio_muted: false, camera_off: false };
    this.token = null; // the join token this session used (end-of-meeting feedback quotes it)
    this.role = null; // "host" | "attendee", from the join grant
    this.recording = false; // the meeting is being recorded (server's word: joined / recording)
    this.recordingBy = null; // the host who last changed it, if known
    this.recordingPending = false; // a `recording` request awaits its answer
    this.log = []; // small event log for diagnostics and tests: {t, ev, ...}

    this.audioTx = null;
    this.cameraTx = null;
    this.screenTx = null;
    this.screenTrack = null;

    this.pubDirty = false;
    this.pubRunning = false;
    this.pendingPublish = null; // {resolve, reject} while a publish_offer is unanswered
    this.publishTargets = []; // the server's latest publish_targets tracks
    this.senderQueue = Promise.resolve(); // sender parameter updates, one at a time

    this.subQueue = Promise.resolve();
    this.bound = new Map(); // subscribe mid -> {attendee_id, source, track, audioEl?}
    this.pingTimer = null;
  }

  get audioTrack() {
    return this.stream.getAudioTracks()[0] || null;
  }

  get videoTrack() {
    return this.stream.getVideoTracks()[0] || null;
  }

  _event(ev, extra = {}) {
    this.log.push({ t: performance.now(), ev, ...extra });
    if (this.log.length > 200) this.log.splice(0, this.log.length - 200);
  }

  _setState(state) {
    this.state = state;
    this._event("state", { state });
    this.ui.onChange?.();
  }

  _fail(kind, err) {
    const msg = err instanceof Error ? err.message : String(err);
    this.ui.banner.error(kind, msg);
  }

  // ------------------------------------------------------------ join/leave

  /** Joins with a join token from POST /v1/meetings/{id}/join. */
  async join(meetingId, name, token) {
    this.meetingId = meetingId;
    this.name = name;
    this.token = token;
    this._setState("joining");
    this.sig = new Signaling(this.url);
    try {
      await this.sig.open();
    } catch (e) {
      this._fail("connection", e);
      this._setState("error");
      throw e;
    }
    this.sig.onClose((ev) => this._onSocketClose(ev));
    const first = this.sig.next(["joined", "error"]);
    this.sig.send({ type: "join", meeting: meetingId, token });
    let reply;
    try {
      reply = await first;
    } catch (e) {
      this._fail("connection", e);
      this._setState("error");
      throw e;
    }
    if (reply.type === "error") {
      const err = new Error(`join refused: ${reply.code}: ${reply.message || ""}`);
      this._fail("server", err);
      this.sig.close();
      this._setState("error");
      throw err;
    }
    this.attendeeId = reply.attendee_id;
    this.recording = reply.recording === true;
    this.hdMode = reply.hd_mode === true;
    for (const a of reply.attendees || []) this._upsertAttendee(a);
    this._installHandlers();
    this._setState("joined");
    this.ui.tiles.setSelf(name, this.videoTrack);
    this.ui.tiles.setSelfState(this.self);
    this._createPublishPc();
    this.pingTimer = setInterval(() => {
      try {
        this.sig.send({ type: "ping" });
      } catch (_) { /* the close handler reports it */ }
    }, PING_INTERVAL_MS);
    this.requestPublish();
  }

  leave() {
    if (this.state === "left") return;
    const wasJoined = this.state === "joined";
    this._setState("left");
    if (wasJoined) {
      try {
        this.sig.send({ type: "leave" });
      } catch (_) { /* already closed */ }
    }
    // The server closes the socket after `leave`; don't wait forever for it.
    const sig = this.sig;
    setTimeout(() => sig?.close(), 1000);
    this._teardown();
  }

  _teardown() {
    clearInterval(this.pingTimer);
    this.pingTimer = null;
    if (this.pendingPublish) {
      this.pendingPublish.reject(new Error("meeting ended"));
      this.pendingPublish = null;
    }
    for (const mid of [...this.bound.keys()]) this._unbind(mid);
    this.pubPc?.close();
    this.subPc?.close();
    this.screenTrack?.stop();
    this.screenTrack = null;
    for (const t of this.stream.getTracks()) t.stop();
    this.ui.tiles.clear();
  }

  _onSocketClose(ev) {
    this._event("socket_close", { code: ev.code, reason: ev.reason });
    if (this.state === "left") return;
    this.ui.banner.error("connection",
      `Connection to the server closed (code ${ev.code}${ev.reason ? `: ${ev.reason}` : ""}).`);
    this._setState("error");
    this._teardown();
  }

  // ------------------------------------------------------------ signaling

  _installHandlers() {
    const s = this.sig;
    s.on("publish_answer", (m) => {
      if (!this.pendingPublish) {
        this.ui.banner.error("protocol", "publish_answer received with no publish_offer outstanding");
        return;
      }
      const p = this.pendingPublish;
      this.pendingPublish = null;
      p.resolve(m.sdp);
    });
    s.on("subscribe_offer", (m) => {
      this._event("subscribe_offer", { mids: (m.tracks || []).map((t) => t.mid) });
      this.subQueue = this.subQueue
        .then(() => this._answerSubscribe(m))
        .catch((e) => this._fail("subscribe", `could not answer subscribe_offer: ${e.message || e}`));
    });
    s.on("attendee_joined", (m) => this._upsertAttendee(m.attendee));
    s.on("attendee_updated", (m) => {
      const a = m.attendee;
      if (!a) return;
      if (a.attendee_id === this.attendeeId) {
        this.self = { audio_muted: !!a.audio_muted, camera_off: !!a.camera_off };
        this.ui.tiles.setSelfState(this.self);
        this.ui.onChange?.();
      } else {
        this._upsertAttendee(a);
      }
    });
    s.on("attendee_left", (m) => {
      const id = m.attendee_id;
      this._event("attendee_left", { id, reason: m.reason });
      if (id === this.attendeeId) return; // we are about to be disconnected
      this.attendees.delete(id);
      this.departed.add(id);
      for (const [mid, b] of this.bound) if (b.attendee_id === id) this._unbind(mid);
      this.ui.tiles.removeAttendee(id);
      this.ui.onChange?.();
    });
    s.on("recording", (m) => {
      // Sent to everyone on a change, and to us alone when our request changed nothing.
      this.recording = m.on === true;
      this.recordingBy = m.by || null;
      this.recordingPending = false;
      this._event("recording", { on: this.recording, by: this.recordingBy });
      this.ui.onChange?.();
    });
    s.on("publish_targets", (m) => {
      this.publishTargets = m.tracks || [];
      this._updateSenders(() => this._applyPublishTargets()); // each run applies the newest targets
    });
    s.on("hd_mode", (m) => {
      this.hdMode = m.on === true;
      this._event("hd_mode", { on: this.hdMode });
      this.ui.onChange?.();
    });
    s.on("speaking", (m) => {
      this.ui.tiles.setSpeaking(m.attendee_ids || [], this.attendeeId);
    });
    s.on("error", (m) => {
      this._event("server_error", { code: m.code });
      this.ui.banner.error("server", `${m.code}: ${m.message || ""}`);
      if (m.code === "forbidden" && this.recordingPending) {
        this.recordingPending = false;
        this.ui.onChange?.();
      }
      if (this.pendingPublish && PUBLISH_ERROR_CODES.has(m.code)) {
        const p = this.pendingPublish;
        this.pendingPublish = null;
        p.reject(new Error(`publish_offer refused: ${m.code}`));
      }
    });
  }

  _upsertAttendee(a) {
    if (!a || !a.attendee_id || a.attendee_id === this.attendeeId) return;
    this.departed.delete(a.attendee_id);
    this.attendees.set(a.attendee_id, a);
    this.ui.tiles.upsertAttendee(a);
    this.ui.onChange?.();
  }

  // ------------------------------------------------------------ publish

  _createPublishPc() {
    const pc = new RTCPeerConnection({ bundlePolicy: "max-bundle", rtcpMuxPolicy: "require", iceServers: [] });
    this.pubPc = pc;
    this._watchPc(pc, "publish");
    const streams = [this.stream];
    if (this.audioTrack) {
      this.audioTx = pc.addTransceiver(this.audioTrack, { direction: "sendonly", streams });
    }
    if (this.videoTrack) {
      this.cameraTx = this._addCameraTransceiver(pc, this.videoTrack, streams);
      applyCodecPreferences(this.cameraTx);
    }
  }

  /** The camera as simulcast where the capture is large enough; one encoding if the browser refuses. */
  _addCameraTransceiver(pc, track, streams) {
    const sendEncodings = cameraEncodings(track);
    if (sendEncodings) {
      try {
        const tx = pc.addTransceiver(track, { direction: "sendonly", streams, sendEncodings });
        this._event("camera_encodings", { rids: sendEncodings.map((e) => e.rid) });
        return tx;
      } catch (e) {
        console.warn("convene: simulcast refused, sending one encoding", e);
      }
    }
    return pc.addTransceiver(track, { direction: "sendonly", streams });
  }

  /**
   * After an answer without simulcast, the browser keeps only the first (lowest) encoding, still scaled
   * down: send that one at full resolution instead.
   */
  async _unscaleLoneEncoding() {
    const sender = this.cameraTx?.sender;
    if (!sender) return;
    const params = sender.getParameters();
    const encs = params.encodings || [];
    if (encs.length !== 1 || !(encs[0].scaleResolutionDownBy > 1)) return;
    encs[0].scaleResolutionDownBy = 1;
    await sender.setParameters(params);
    this._event("simulcast_declined", {});
  }

  _watchPc(pc, label) {
    pc.addEventListener("connectionstatechange", () => {
      this._event(`${label}_pc`, { state: pc.connectionState });
      if (pc.connectionState === "failed" && this.state === "joined") {
        this.ui.banner.error("media", `The ${label} connection failed (ICE/DTLS).`);
      }
    });
  }

  _publishedTracks() {
    const out = [];
    const add = (tx, source) => {
      if (tx && tx.mid !== null && tx.sender.track && tx.direction === "sendonly") out.push({ mid: tx.mid, source });
    };
    add(this.audioTx, "audio");
    add(this.cameraTx, "camera");
    add(this.screenTx, "screen");
    return out;
  }

  /** Asks for a publish renegotiation; folded into one offer if one is in flight. */
  requestPublish() {
    this.pubDirty = true;
    if (!this.pubRunning) this._publishLoop();
  }

  async _publishLoop() {
    this.pubRunning = true;
    try {
      while (this.pubDirty && this.state === "joined") {
        this.pubDirty = false;
        await this._publishOnce();
      }
    } catch (e) {
      if (this.state === "joined") this._fail("publish", e);
    } finally {
      this.pubRunning = false;
    }
  }

  async _publishOnce() {
    const pc = this.pubPc;
    const offer = await pc.createOffer();
    await pc.setLocalDescription({ type: "offer", sdp: enableOpusDtx(offer.sdp) });
    const tracks = this._publishedTracks();
    const answered = new Promise((resolve, reject) => {
      this.pendingPublish = { resolve, reject };
    });
    this._event("publish_offer", { tracks });
    this.sig.send({ type: "publish_offer", sdp: pc.localDescription.sdp, tracks });
    let sdp;
    try {
      sdp = await answered;
    } catch (e) {
      if (pc.signalingState === "have-local-offer") await pc.setLocalDescription({ type: "rollback" });
      throw e;
    }
    await pc.setRemoteDescription({ type: "answer", sdp });
    this._event("publish_answer", {});
    this._updateSenders(() => this._unscaleLoneEncoding());
  }

  // ------------------------------------------------------------ controls

  /**
   * Runs a sender parameter update after the previous one: a getParameters/setParameters pair must not
   * interleave with another on the same sender. Failures are logged, not fatal: the old parameters stay.
   */
  _updateSenders(update) {
    this.senderQueue = this.senderQueue
      .then(update)
      .catch((e) => this._event("sender_update_failed", { message: e.message }));
  }

  /**
   * Applies the server's publish_targets to our senders: each video track's bitrate ceiling (the
   * meeting's tier, for all its simulcast layers together; see applyTarget).
   */
  async _applyPublishTargets() {
    if (!this.pubPc) return;
    for (const target of this.publishTargets) {
      const tx = this.pubPc.getTransceivers().find((t) => t.mid === target.mid);
      if (!tx || !tx.sender || !tx.sender.track) continue;
      const params = tx.sender.getParameters();
      if (!params.encodings || !params.encodings.length) continue;
      applyTarget(params.encodings, target);
      await tx.sender.setParameters(params);
    }
    this._event("publish_targets", { tracks: this.publishTargets });
  }

  /** Caps this attendee's downlink (kbps), or lifts the cap (null). */
  setDownlinkCap(kbps) {
    if (this.state !== "joined") return;
    this.downlinkCap = kbps;
    this.sig.send({ type: "downlink_cap", kbps });
  }

  setAudioMuted(muted) {
    if (this.state !== "joined") return;
    if (this.audioTrack) this.audioTrack.enabled = !muted;
    this.self.audio_muted = muted;
    this.ui.tiles.setSelfState(this.self);
    this.sig.send({ type: "mute", source: "audio", muted });
  }

  setCameraOff(off) {
    if (this.state !== "joined") return;
    if (this.videoTrack) this.videoTrack.enabled = !off;
    this.self.camera_off = off;
    this.ui.tiles.setSelfState(this.self);
    this.sig.send({ type: "mute", source: "camera", muted: off });
  }

  /** Asks the server to turn HD mode on or off (hosts only); the state changes when it answers. */
  setHdMode(on) {
    if (this.state !== "joined") return;
    this.sig.send({ type: "hd_mode", on: !!on });
  }

  /** Asks the server to start or stop recording (hosts only); the state changes when it answers. */
  setRecording(on) {
    if (this.state !== "joined") return;
    this._event("recording_request", { on });
    try {
      this.sig.send({ type: "recording", on: !!on });
      this.recordingPending = true;
    } catch (e) {
      this._fail("connection", e);
    }
    this.ui.onChange?.();
  }

  get sharing() {
    return !!this.screenTrack;
  }

  async startShare() {
    if (this.state !== "joined" || this.screenTrack) return;
    const stream = await navigator.mediaDevices.getDisplayMedia({ video: true, audio: false });
    const track = stream.getVideoTracks()[0];
    if (!track) throw new Error("the screen capture has no video track");
    if (this.state !== "joined") {
      track.stop();
      return;
    }
    track.contentHint = "detail";
    this.screenTrack = track;
    track.addEventListener("ended", () => this.stopShare()); // "Stop sharing" in the browser's own UI
    if (this.screenTx) {
      // Reuse the m-line from an earlier share.
      await this.screenTx.sender.replaceTrack(track);
      this.screenTx.direction = "sendonly";
    } else {
      this.screenTx = this.pubPc.addTransceiver(track, { direction: "sendonly" });
      applyCodecPreferences(this.screenTx);
    }
    this.ui.tiles.setSelfScreen(this.name, track);
    this.ui.onChange?.();
    this.requestPublish();
  }

  async stopShare() {
    const track = this.screenTrack;
    if (!track) return;
    this.screenTrack = null;
    track.stop();
    this.ui.tiles.setSelfScreen(this.name, null);
    this.ui.onChange?.();
    if (this.state !== "joined") return;
    // Keep the m-line (inactive, unlisted in `tracks`) so a later share can reuse it.
    this.screenTx.direction = "inactive";
    await this.screenTx.sender.replaceTrack(null);
    this.requestPublish();
  }

  // ------------------------------------------------------------ subscribe

  _createSubscribePc() {
    const pc = new RTCPeerConnection({ bundlePolicy: "max-bundle", rtcpMuxPolicy: "require", iceServers: [] });
    this.subPc = pc;
    this._watchPc(pc, "subscribe");
    pc.addEventListener("datachannel", (ev) => {
      this.dataChannel = ev.channel;
      this.onDataChannel?.(ev.channel);
    });
    pc.addEventListener("track", (ev) => {
      this._event("track", { mid: ev.transceiver.mid, kind: ev.track.kind });
      this._applyTracks();
    });
  }

  async _answerSubscribe(msg) {
    if (this.state !== "joined") return;
    if (!this.subPc) this._createSubscribePc();
    const pc = this.subPc;
    const tracks = Array.isArray(msg.tracks) ? msg.tracks : [];
    this.pendingTracks = tracks;
    await pc.setRemoteDescription({ type: "offer", sdp: msg.sdp });
    const answer = await pc.createAnswer();
    await pc.setLocalDescription(answer);
    if (this.state !== "joined") return;
    this.sig.send({ type: "subscribe_answer", sdp: pc.localDescription.sdp });
    this.tracks = tracks;
    this.pendingTracks = null;
    this._event("subscribe_answer", { mids: tracks.map((t) => t.mid) });
    this._applyTracks();
  }

  /** Binds each subscribe m-line's receiver track to its attendee's tile / audio element. */
  _applyTracks() {
    const pc = this.subPc;
    if (!pc) return;
    const list = this.pendingTracks || this.tracks;
    const byMid = new Map(list.map((t) => [String(t.mid), t]));
    const wanted = new Map(); // mid -> {info, track}
    for (const tx of pc.getTransceivers()) {
      if (tx.mid === null || tx.stopped) continue;
      const info = byMid.get(tx.mid);
      if (info && !this.departed.has(info.attendee_id)) wanted.set(tx.mid, { info, track: tx.receiver.track });
    }
    // Unbind first (ended or re-purposed m-lines), then bind, so a track that
    // moved to another m-line is not cleared after being placed.
    for (const [mid, b] of [...this.bound]) {
      const w = wanted.get(mid);
      if (!w || w.info.attendee_id !== b.attendee_id || w.info.source !== b.source || w.track !== b.track) {
        this._unbind(mid);
      }
    }
    for (const [mid, w] of wanted) if (!this.bound.has(mid)) this._bind(mid, w.info, w.track);
    this.ui.onChange?.();
  }

  _bind(mid, info, track) {
    const b = { attendee_id: info.attendee_id, source: info.source, track };
    const name = this.attendees.get(info.attendee_id)?.name;
    if (info.source === "audio") {
      const audio = document.createElement("audio");
      audio.autoplay = true;
      audio.dataset.mid = mid;
      audio.dataset.attendeeId = info.attendee_id;
      audio.srcObject = new MediaStream([track]);
      this.ui.audioSink.append(audio);
      audio.play().catch((e) => this.ui.onAudioBlocked?.(e));
      b.audioEl = audio;
    } else if (info.source === "camera" || info.source === "screen") {
      if (info.source === "camera" && !this.attendees.has(info.attendee_id)) {
        // subscribe_offer raced ahead of attendee_joined: make the tile now, name it later.
        this.ui.tiles.upsertAttendee({ attendee_id: info.attendee_id, name: name || "Guest" });
      }
      this.ui.tiles.setRemoteVideo(info.attendee_id, info.source, track, name);
    }
    this.bound.set(mid, b);
  }

  _unbind(mid) {
    const b = this.bound.get(mid);
    if (!b) return;
    this.bound.delete(mid);
    if (b.audioEl) {
      b.audioEl.srcObject = null;
      b.audioEl.remove();
    } else {
      this.ui.tiles.clearRemoteVideo(b.attendee_id, b.source, b.track);
    }
  }

  /** Retries playback of remote audio after a user gesture (autoplay policy). */
  resumeAudio() {
    for (const b of this.bound.values()) b.audioEl?.play().catch(() => {});
  }
}
