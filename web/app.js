// Convene web app entry point: join form, device pickers, meeting controls.
//
// Join links: /?meeting=ID&name=NAME pre-fill the form; &autojoin=1 joins at once.
// Optional: &quality=low asks the camera for 320x180@15 (light test runs).
// /register?invite=TOKEN: the invitation page (display name + password).
//
// Joining asks the server for a join token first (POST /v1/meetings/{id}/join, docs/web-api.md):
// signed-in users join under their own name (hosts as host), guests under the name they type.
//
// Hosts get a Record toggle; everyone sees "● Recording" while the meeting records (docs/signaling.md).
// After leaving, "How was the meeting?" sends one rating per meeting to POST /v1/feedback, quoting the
// join token of the meeting left.
//
// Test hook (read-only): window.convene = { state, attendeeId, pubPc, subPc, tracks, role, recording,
// feedback, ... }

import * as account from "./js/account.js";
import { Meeting } from "./js/meeting.js";
import { RemoteControl } from "./js/remote-control.js";
import { signalUrl } from "./js/signaling.js";
import { Banner, TileGrid } from "./js/ui.js";

const $ = (id) => document.getElementById(id);
const MEETING_RE = /^[0-9]{10}$/;
// People write meeting IDs in groups ("123 456 7890", "123-456-7890").
const normaliseMeetingId = (text) => text.replace(/[\s-]/g, "");
// Control characters (C0, DEL, C1) are refused by the server in names.
// eslint-disable-next-line no-control-regex
const CONTROL_RE = /[\u0000-\u001f\u007f-\u009f]/;
// Feedback answered 404 (attendance not applied yet) is retried this often, waiting 0.5 s, 1 s, ...
const FEEDBACK_ATTEMPTS = 5;
const FEEDBACK_RETRY_MS = 500;

const params = new URLSearchParams(window.location.search);
const banner = new Banner($("banner"));
const tiles = new TileGrid($("tiles"));

let meeting = null; // current Meeting, if any
let remote = null; // its RemoteControl, once joined
let appState = "idle"; // state before any meeting exists
let preview = null; // MediaStream shown on the join form
let previewPromise = null;
let user = null; // the signed-in user ({ display_name, can_host, personal_pin, ... }) or null
// The rating of the current meeting: idle (not given) | sending | done. One per meeting: a new
// Meeting gets a fresh one.
let feedback = { state: "idle", text: "" };

// ---------------------------------------------------------------- test hook

window.convene = Object.freeze({
  get state() { return meeting ? meeting.state : appState; },
  get attendeeId() { return meeting ? meeting.attendeeId : null; },
  get pubPc() { return meeting ? meeting.pubPc : null; },
  get subPc() { return meeting ? meeting.subPc : null; },
  get tracks() { return meeting ? meeting.tracks.map((t) => ({ ...t })) : []; },
  get attendees() { return meeting ? [...meeting.attendees.values()].map((a) => ({ ...a })) : []; },
  get log() { return meeting ? meeting.log.map((e) => ({ ...e })) : []; },
  get user() { return user ? { ...user } : null; },
  get role() { return meeting ? meeting.role : null; },
  get recording() { return meeting ? meeting.state === "joined" && meeting.recording : false; },
  get hdMode() { return meeting ? meeting.state === "joined" && meeting.hdMode : false; },
  get feedback() { return { ...feedback }; },
  get remoteControl() {
    return {
      received: remote ? remote.received.map((e) => ({ ...e })) : [],
      session: remote && remote.session ? { ...remote.session } : null,
      controlling: remote ? remote.controlling : false,
      controlled: remote ? remote.controlled : false,
      sent: remote ? remote.sent : 0,
    };
  },
});

// ---------------------------------------------------------------- views

function show(view) {
  $("register-view").hidden = view !== "register";
  $("join-view").hidden = view !== "join";
  $("meeting-view").hidden = view !== "meeting";
  $("left-view").hidden = view !== "left";
}

const STATUS_TEXT = {
  idle: "Not connected",
  joining: "Joining…",
  joined: "Connected",
  left: "Left the meeting",
  error: "Disconnected",
};

function render() {
  const state = window.convene.state;
  document.body.dataset.state = state;
  $("status").textContent = STATUS_TEXT[state] || state;
  $("meeting-label").textContent = meeting && state === "joined" ? `Meeting ${meeting.meetingId}` : "";
  $("copy-link-button").hidden = !(meeting && state === "joined");
  const low = Boolean(meeting && meeting.downlinkCap);
  $("lowbw-button").setAttribute("aria-pressed", String(low));
  $("lowbw-button").textContent = low ? "Full bandwidth" : "Low bandwidth";
  $("recording-indicator").hidden = !window.convene.recording;
  $("hd-indicator").hidden = !window.convene.hdMode;
  renderFeedback();
  if (!meeting) return;
  const muted = meeting.self.audio_muted;
  const camOff = meeting.self.camera_off;
  const mic = $("mic-button");
  mic.textContent = muted ? "Unmute" : "Mute";
  mic.setAttribute("aria-pressed", String(muted));
  mic.disabled = !meeting.audioTrack;
  const cam = $("cam-button");
  cam.textContent = camOff ? "Start camera" : "Stop camera";
  cam.setAttribute("aria-pressed", String(camOff));
  cam.disabled = !meeting.videoTrack;
  const share = $("share-button");
  share.textContent = meeting.sharing ? "Stop sharing" : "Share screen";
  share.setAttribute("aria-pressed", String(meeting.sharing));
  share.disabled = !navigator.mediaDevices || typeof navigator.mediaDevices.getDisplayMedia !== "function";
  const record = $("record-button");
  // Only the host's token lets the server accept `recording`; others would just get `forbidden`.
  record.hidden = meeting.role !== "host";
  record.textContent = meeting.recording ? "Stop recording" : "Record";
  record.setAttribute("aria-pressed", String(meeting.recording));
  record.disabled = state !== "joined" || meeting.recordingPending;
  const hd = $("hd-button");
  hd.hidden = meeting.role !== "host";
  hd.textContent = meeting.hdMode ? "HD off" : "HD";
  hd.setAttribute("aria-pressed", String(Boolean(meeting.hdMode)));
  hd.disabled = state !== "joined";
  if (remote && state === "joined") remote.render();
  if (remote && (state === "error" || state === "left")) {
    remote.close();
    remote = null;
  }
  if (state === "error" || state === "left") {
    show(state === "left" ? "left" : "join");
    if (state === "error") {
      resetJoinForm();
      if (!previewPromise) acquirePreview();
    }
  }
}

// ---------------------------------------------------------------- devices

function videoConstraints(deviceId) {
  const low = params.get("quality") === "low";
  const c = low
    ? { width: { ideal: 320 }, height: { ideal: 180 }, frameRate: { ideal: 15 } }
    : { width: { ideal: 640 }, height: { ideal: 360 }, frameRate: { ideal: 24 } };
  if (deviceId) c.deviceId = { exact: deviceId };
  return c;
}

function fillSelect(select, devices, kindLabel, currentId) {
  const previous = select.value;
  select.replaceChildren();
  devices.forEach((d, i) => {
    const opt = document.createElement("option");
    opt.value = d.deviceId;
    opt.textContent = d.label || `${kindLabel} ${i + 1}`;
    select.append(opt);
  });
  const none = document.createElement("option");
  none.value = "none";
  none.textContent = `No ${kindLabel.toLowerCase()}`;
  select.append(none);
  const want = currentId || previous;
  if (want && [...select.options].some((o) => o.value === want)) select.value = want;
  else if (!devices.length) select.value = "none";
}

async function refreshDevices(stream) {
  if (!navigator.mediaDevices?.enumerateDevices) return;
  const devices = await navigator.mediaDevices.enumerateDevices();
  const micId = stream?.getAudioTracks()[0]?.getSettings().deviceId;
  const camId = stream?.getVideoTracks()[0]?.getSettings().deviceId;
  fillSelect($("mic-select"), devices.filter((d) => d.kind === "audioinput"), "Microphone",
    stream && !micId && $("mic-select").value === "none" ? "none" : micId);
  fillSelect($("cam-select"), devices.filter((d) => d.kind === "videoinput"), "Camera",
    stream && !camId && $("cam-select").value === "none" ? "none" : camId);
}

async function getMedia(micValue, camValue) {
  const audio = micValue === "none" ? false : (micValue ? { deviceId: { exact: micValue } } : true);
  const video = camValue === "none" ? false : videoConstraints(camValue);
  if (!audio && !video) return new MediaStream();
  try {
    return await navigator.mediaDevices.getUserMedia({ audio, video });
  } catch (e) {
    // One missing/blocked device should not prevent using the other.
    if (audio && video) {
      const parts = [];
      for (const c of [{ audio }, { video }]) {
        try {
          parts.push(...(await navigator.mediaDevices.getUserMedia(c)).getTracks());
        } catch (_) { /* reported below */ }
      }
      if (parts.length) {
        $("preview-msg").textContent = `Only part of your devices is available (${e.name}).`;
        return new MediaStream(parts);
      }
    }
    throw e;
  }
}

/** (Re)acquires mic/camera for the join form preview from the pickers' values. */
function acquirePreview() {
  previewPromise = (async () => {
    if (preview) for (const t of preview.getTracks()) t.stop();
    preview = null;
    $("preview").srcObject = null;
    if (!navigator.mediaDevices?.getUserMedia) {
      $("preview-msg").textContent = "This browser cannot capture media here (a secure context, https or localhost, is required).";
      banner.error("media", "navigator.mediaDevices is unavailable: open Convene over https or on localhost.");
      preview = new MediaStream();
      return preview;
    }
    $("preview-msg").textContent = "Requesting camera and microphone…";
    try {
      preview = await getMedia($("mic-select").value, $("cam-select").value);
      $("preview").srcObject = preview;
      const kinds = preview.getTracks().map((t) => t.kind);
      $("preview-msg").textContent = kinds.length
        ? `Ready: ${kinds.includes("audio") ? "microphone" : "no microphone"}, ${kinds.includes("video") ? "camera" : "no camera"}.`
        : "Joining without microphone and camera.";
    } catch (e) {
      preview = new MediaStream();
      $("preview-msg").textContent = `No camera or microphone: ${e.name}: ${e.message}`;
      banner.error("media", `Could not access camera/microphone: ${e.name}: ${e.message}`);
    }
    try {
      await refreshDevices(preview);
    } catch (e) {
      banner.error("media", `Could not list devices: ${e.message}`);
    }
    return preview;
  })();
  return previewPromise;
}

// ---------------------------------------------------------------- join / leave

function formError(text) {
  const p = $("form-error");
  p.textContent = text || "";
  p.hidden = !text;
}

function resetJoinForm() {
  $("join-button").disabled = false;
  $("join-button").textContent = "Join";
}

async function join() {
  const meetingId = normaliseMeetingId($("meeting-id").value);
  const name = $("display-name").value.trim();
  if (!MEETING_RE.test(meetingId)) {
    formError("Meeting ID: the 10 digits from your invitation.");
    $("meeting-id").focus();
    return;
  }
  if (!name || [...name].length > 64 || CONTROL_RE.test(name)) {
    formError("Name: 1-64 characters, no control characters.");
    $("display-name").focus();
    return;
  }
  formError("");
  $("join-button").disabled = true;
  $("join-button").textContent = "Joining…";

  let grant;
  try {
    grant = await account.requestJoin(meetingId, name);
  } catch (e) {
    formError(e.message);
    resetJoinForm();
    return;
  }

  const stream = await (previewPromise || acquirePreview());
  // The meeting owns these tracks now; the preview gets fresh ones on return.
  preview = null;
  previewPromise = null;
  $("preview").srcObject = null;

  tiles.clear();
  feedback = { state: "idle", text: "" };
  meeting = new Meeting({
    url: signalUrl(),
    stream,
    ui: { tiles, banner, audioSink: $("audio-sink"), onChange: render, onAudioBlocked },
  });
  meeting.role = grant.role;
  show("meeting");
  render();
  try {
    // The grant's token admits us, and is kept on the meeting for the feedback after leaving.
    await meeting.join(meetingId, grant.name, grant.token);
  } catch (e) {
    // Already on the banner; let the user fix the form and try again.
    show("join");
    resetJoinForm();
    if (!previewPromise) acquirePreview();
    return;
  }
  remote = new RemoteControl({ meeting, panel: $("remote-control") });
  meeting.onDataChannel = (channel) => remote?.attachChannel(channel);
  const url = new URL(window.location.href);
  url.search = new URLSearchParams({ meeting: meetingId, name }).toString();
  history.replaceState(null, "", url);
  resetJoinForm();
  render();
}

// ---------------------------------------------------------------- account

function setError(id, text) {
  const p = $(id);
  p.textContent = text || "";
  p.hidden = !text;
}

function meetingItem(m) {
  const when = m.starts_at ? new Date(m.starts_at).toLocaleString() : (m.kind === "personal" ? "any time" : "now");
  const li = document.createElement("li");
  li.dataset.meetingId = m.meeting_id;
  li.dataset.kind = m.kind;
  const meta = document.createElement("span");
  meta.className = "meeting-meta";
  const title = document.createElement("span");
  title.textContent = m.title;
  const id = document.createElement("span");
  id.className = "meeting-id";
  id.textContent = `${m.meeting_id} · ${m.kind} · ${when}`;
  meta.append(title, id);
  const go = document.createElement("button");
  go.type = "button";
  go.textContent = "Join";
  go.addEventListener("click", () => {
    $("meeting-id").value = m.meeting_id;
    join().catch((e) => banner.error("app", e.message || String(e)));
  });
  li.append(meta, go);
  return li;
}

async function refreshMeetings() {
  const list = $("my-meetings");
  list.replaceChildren();
  try {
    const mine = await account.myMeetings();
    if (mine.personal) list.append(meetingItem(mine.personal));
    for (const m of mine.meetings) list.append(meetingItem(m));
  } catch (e) {
    setError("host-error", e.message);
  }
}

/** Shows the sign-in form or the signed-in user's panel. */
function renderAccount() {
  $("signin-form").hidden = !!user;
  $("signup-form").hidden = !!user;
  $("host-panel").hidden = !user;
  $("user-menu").hidden = !user;
  $("user-name").textContent = !user ? ""
    : user.trial_ends_at ? `${user.display_name} · Pro trial until ${new Date(user.trial_ends_at).toLocaleDateString()}`
      : user.display_name;
  if (user) {
    if (!$("display-name").value) $("display-name").value = user.display_name;
    refreshMeetings();
  }
}

async function startMeeting(schedule) {
  setError("host-error", "");
  try {
    const m = await account.createMeeting(schedule);
    await refreshMeetings();
    if (!schedule) {
      $("meeting-id").value = m.meeting_id;
      await join();
    }
    return m;
  } catch (e) {
    setError("host-error", e.message);
    return null;
  }
}

function onAudioBlocked(e) {
  if (e && e.name === "NotAllowedError") {
    $("audio-button").hidden = false;
  } else if (e && e.name !== "AbortError") {
    banner.error("media", `Could not play remote audio: ${e.name}: ${e.message}`);
  }
}

function leave() {
  if (!meeting) return;
  meeting.leave();
  render();
}

// ---------------------------------------------------------------- feedback

function renderFeedback() {
  const done = feedback.state === "done";
  $("feedback-buttons").hidden = done;
  $("feedback-up").disabled = feedback.state !== "idle";
  $("feedback-down").disabled = feedback.state !== "idle";
  $("feedback-result").hidden = !done;
  $("feedback-result").textContent = done ? feedback.text : "";
}

async function sendFeedback(rating) {
  // One rating per meeting, and only for a meeting that was joined with a token.
  if (!meeting || !meeting.token || feedback.state !== "idle") return;
  const current = feedback = { state: "sending", text: "" };
  renderFeedback();
  const token = meeting.token;
  let text = "Thanks for your feedback";
  for (let attempt = 1; ; attempt++) {
    try {
      await account.sendFeedback(token, rating);
      break;
    } catch (e) {
      // 404: the server has not applied this meeting's attendance yet (docs/web-api.md); it catches
      // up within moments, so ask again before giving up.
      if (e.status === 404 && attempt < FEEDBACK_ATTEMPTS && feedback === current) {
        await new Promise((resolve) => setTimeout(resolve, FEEDBACK_RETRY_MS * attempt));
        continue;
      }
      text = e.message || String(e);
      break;
    }
  }
  // A rejoin while the request was out started a new meeting: its rating is its own.
  if (feedback !== current) return;
  feedback = { state: "done", text };
  renderFeedback();
}

// ---------------------------------------------------------------- wiring

$("join-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  join().catch((e) => banner.error("app", e.message || String(e)));
});
$("mic-select").addEventListener("change", () => acquirePreview());
$("cam-select").addEventListener("change", () => acquirePreview());

$("mic-button").addEventListener("click", () => {
  if (meeting) meeting.setAudioMuted(!meeting.self.audio_muted);
  render();
});
/** What "Low bandwidth" caps the downlink to: audio plus one small video layer. */
const LOW_BANDWIDTH_KBPS = 300;
$("lowbw-button").addEventListener("click", () => {
  if (!meeting) return;
  const on = !meeting.downlinkCap;
  meeting.setDownlinkCap(on ? LOW_BANDWIDTH_KBPS : null);
  render();
});
$("cam-button").addEventListener("click", () => {
  if (meeting) meeting.setCameraOff(!meeting.self.camera_off);
  render();
});
$("share-button").addEventListener("click", async () => {
  if (!meeting) return;
  try {
    if (meeting.sharing) await meeting.stopShare();
    else await meeting.startShare();
  } catch (e) {
    if (e.name === "NotAllowedError") banner.error("media", "Screen sharing was cancelled or not allowed.");
    else banner.error("media", `Screen sharing failed: ${e.name || "Error"}: ${e.message}`);
  }
  render();
});
$("audio-button").addEventListener("click", () => {
  $("audio-button").hidden = true;
  meeting?.resumeAudio();
});
$("leave-button").addEventListener("click", leave);
$("hd-button").addEventListener("click", () => {
  if (meeting) meeting.setHdMode(!meeting.hdMode);
});
$("record-button").addEventListener("click", () => {
  if (meeting) meeting.setRecording(!meeting.recording);
  render();
});
$("feedback-up").addEventListener("click", () => sendFeedback("up"));
$("feedback-down").addEventListener("click", () => sendFeedback("down"));
$("rejoin-button").addEventListener("click", () => {
  show("join");
  acquirePreview().then(() => join());
});
$("home-button").addEventListener("click", () => {
  show("join");
  acquirePreview();
});
window.addEventListener("pagehide", () => {
  if (meeting && meeting.state === "joined") meeting.leave();
});

$("signin-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  setError("signin-error", "");
  try {
    user = await account.signIn($("signin-email").value.trim(), $("signin-password").value);
    $("signin-password").value = "";
    renderAccount();
  } catch (e) {
    setError("signin-error", e.message);
  }
});
/** The link others open to join this meeting (the form pre-filled with its ID). */
function inviteLink() {
  return `${window.location.origin}/?meeting=${encodeURIComponent(meeting.meetingId)}`;
}

$("copy-link-button").addEventListener("click", async () => {
  if (!meeting) return;
  const link = inviteLink();
  try {
    await navigator.clipboard.writeText(link);
    $("copy-link-button").textContent = "Link copied";
  } catch (_) {
    // No clipboard permission (e.g. plain http to another host): show it to copy by hand.
    window.prompt("Share this link to invite others:", link);
  }
  setTimeout(() => { $("copy-link-button").textContent = "Copy invite link"; }, 2000);
});

$("signup-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  setError("signup-error", "");
  $("signup-done").hidden = true;
  try {
    const reply = await account.signUp($("signup-email").value.trim());
    $("signup-done").textContent = `Almost there: ${reply.message}.`;
    $("signup-done").hidden = false;
  } catch (e) {
    setError("signup-error", e.message);
  }
});
$("sign-out-button").addEventListener("click", async () => {
  try {
    await account.signOut();
  } catch (e) {
    banner.error("app", e.message);
  }
  user = null;
  renderAccount();
});
$("instant-button").addEventListener("click", () => startMeeting(null));
$("schedule-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const start = $("schedule-start").value;
  if (!start) {
    setError("host-error", "Choose when the meeting starts.");
    return;
  }
  const invitees = $("schedule-invitees").value.split(",").map((x) => x.trim()).filter(Boolean);
  const m = await startMeeting({
    title: $("schedule-title").value.trim() || undefined,
    starts_at: new Date(start).toISOString(),
    duration_minutes: Number($("schedule-duration").value) || 30,
    invitees,
  });
  if (m) $("schedule-form").reset();
});
$("register-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const password = $("register-password").value;
  if (password !== $("register-password2").value) {
    setError("register-error", "The two passwords differ.");
    return;
  }
  setError("register-error", "");
  $("register-button").disabled = true;
  try {
    const link = params.get("signup") ? { signup: params.get("signup") } : { invite: params.get("invite") || "" };
    user = await account.register(link, $("register-name").value.trim(), password);
    history.replaceState(null, "", "/");
    show("join");
    renderAccount();
    acquirePreview();
  } catch (e) {
    setError("register-error", e.message);
  } finally {
    $("register-button").disabled = false;
  }
});

// ---------------------------------------------------------------- start

$("meeting-id").value = params.get("meeting") || "";
$("display-name").value = params.get("name") || "";
const accountReady = account.currentUser().then((u) => {
  user = u;
  renderAccount();
}).catch((e) => banner.error("app", `Could not check your sign-in: ${e.message}`));
if (window.location.pathname === "/register") {
  show("register");
  render();
} else {
  show("join");
  render();
  const ready = acquirePreview();
  if (params.get("autojoin") === "1" && $("meeting-id").value && $("display-name").value) {
    Promise.all([ready, accountReady]).then(() => join()).catch((e) => banner.error("app", e.message || String(e)));
  }
}
