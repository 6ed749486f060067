// DOM helpers: the error banner and the tile grid.
//
// Tile DOM contract (relied on by tests/e2e):
//   remote tile:  <figure class="tile" data-attendee-id="a-..." data-source="camera|screen">
//   self tile:    <figure class="tile" data-self="1" data-source="camera|screen">
//   speaking:     class "speaking" and data-speaking="1" on the attendee's camera tile
//   state:        data-audio-muted / data-camera-off = "1" | "0"

const $ = (sel, root = document) => root.querySelector(sel);

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else node.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children) node.append(c);
  return node;
}

function initials(name) {
  const parts = String(name || "?").trim().split(/\s+/).filter(Boolean);
  const letters = parts.slice(0, 2).map((p) => [...p][0].toUpperCase());
  return letters.join("") || "?";
}

// ---------------------------------------------------------------- banner

export class Banner {
  constructor(root) {
    this.root = root;
    this.list = $(".banner-list", root);
    $(".banner-close", root).addEventListener("click", () => this.clear());
  }

  /** Shows an error. `kind` is a short tag ("server", "connection", "media", ...). */
  error(kind, message) {
    const text = `${message}`;
    console.error(`convene [${kind}]`, text);
    const time = new Date().toLocaleTimeString();
    const item = el("li", { "data-kind": kind },
      el("span", { class: "banner-time", text: time }),
      el("span", { class: "banner-kind", text: kind }),
      el("span", { class: "banner-text", text }));
    this.list.append(item);
    // Keep the banner short: only the latest few errors.
    while (this.list.children.length > 5) this.list.firstElementChild.remove();
    this.root.hidden = false;
  }

  clear() {
    this.list.replaceChildren();
    this.root.hidden = true;
  }
}

// ---------------------------------------------------------------- tiles

class Tile {
  constructor({ self, attendeeId, source, name }) {
    this.source = source;
    this.video = el("video", { autoplay: true, playsinline: true, muted: true });
    this.video.muted = true; // audio plays through separate <audio> elements
    this.avatar = el("div", { class: "avatar", "aria-hidden": "true" });
    this.nameEl = el("span", { class: "tile-name" });
    this.micBadge = el("span", { class: "badge badge-mic", text: "Mic off", hidden: true });
    this.camBadge = el("span", { class: "badge badge-cam", text: "Camera off", hidden: true });
    this.speakBadge = el("span", { class: "badge badge-speaking", text: "Speaking", hidden: true });
    const caption = el("figcaption", {}, this.nameEl, this.speakBadge, this.micBadge, this.camBadge);
    this.root = el("figure", {
      class: `tile tile-${source}${self ? " tile-self" : ""}`,
      "data-source": source,
      "data-self": self ? "1" : undefined,
      "data-attendee-id": self ? undefined : attendeeId,
      "data-speaking": "0",
      "data-audio-muted": "0",
      "data-camera-off": "0",
      "data-has-video": "0",
    }, this.video, this.avatar, caption);
    this.isSelf = self;
    this.track = null;
    this.setName(name);
  }

  setName(name) {
    this.name = name;
    const label = this.source === "screen" ? `${name} (screen)` : (this.isSelf ? `${name} (you)` : name);
    this.nameEl.textContent = label;
    this.avatar.textContent = initials(name);
    this.root.setAttribute("aria-label", label);
  }

  setTrack(track) {
    if (this.track === track) return;
    this.track = track;
    this.video.srcObject = track ? new MediaStream([track]) : null;
    this.root.dataset.hasVideo = track ? "1" : "0";
    if (track) {
      this.video.play().catch((e) => {
        // Muted video may always autoplay; anything else is worth a log line.
        if (e.name !== "AbortError") console.warn("convene: video play failed", e);
      });
    }
  }

  setState({ audio_muted, camera_off }) {
    if (audio_muted !== undefined) {
      this.root.dataset.audioMuted = audio_muted ? "1" : "0";
      this.micBadge.hidden = !audio_muted;
    }
    if (camera_off !== undefined && this.source === "camera") {
      this.root.dataset.cameraOff = camera_off ? "1" : "0";
      this.camBadge.hidden = !camera_off;
    }
  }

  setSpeaking(on) {
    this.root.classList.toggle("speaking", on);
    this.root.dataset.speaking = on ? "1" : "0";
    this.speakBadge.hidden = !on;
  }
}

export class TileGrid {
  constructor(root) {
    this.root = root;
    this.tiles = new Map(); // key "self:camera" | "<attendee_id>:<source>" -> Tile
  }

  _key(attendeeId, source) {
    return `${attendeeId}:${source}`;
  }

  _get(key, make) {
    let tile = this.tiles.get(key);
    if (!tile && make) {
      tile = make();
      this.tiles.set(key, tile);
      this._insert(tile);
    }
    return tile;
  }

  _insert(tile) {
    // Self first, then camera tiles, screens last (they tend to be the big ones).
    if (tile.isSelf && tile.source === "camera") this.root.prepend(tile.root);
    else this.root.append(tile.root);
    this._relayout();
  }

  _relayout() {
    this.root.dataset.count = String(this.tiles.size);
  }

  setSelf(name, track) {
    const t = this._get("self:camera", () => new Tile({ self: true, source: "camera", name }));
    t.setName(name);
    t.setTrack(track || null);
    return t;
  }

  setSelfState(state) {
    this.tiles.get("self:camera")?.setState(state);
  }

  setSelfScreen(name, track) {
    if (!track) {
      this._remove("self:screen");
      return;
    }
    const t = this._get("self:screen", () => new Tile({ self: true, source: "screen", name }));
    t.setTrack(track);
  }

  /** Ensures an attendee's camera tile exists and reflects `attendee`. */
  upsertAttendee(attendee) {
    const id = attendee.attendee_id;
    const cam = this._get(this._key(id, "camera"),
      () => new Tile({ self: false, attendeeId: id, source: "camera", name: attendee.name }));
    cam.setName(attendee.name);
    cam.setState(attendee);
    const screen = this.tiles.get(this._key(id, "screen"));
    if (screen) screen.setName(attendee.name);
  }

  removeAttendee(attendeeId) {
    this._remove(this._key(attendeeId, "camera"));
    this._remove(this._key(attendeeId, "screen"));
  }

  /** Places a remote video track on the attendee's camera or screen tile. */
  setRemoteVideo(attendeeId, source, track, name) {
    const key = this._key(attendeeId, source);
    const t = this._get(key, () => new Tile({ self: false, attendeeId, source, name: name || "Guest" }));
    t.setTrack(track);
  }

  /** Takes `track` off its tile (a screen tile goes away; a camera tile stays, without video). */
  clearRemoteVideo(attendeeId, source, track) {
    const key = this._key(attendeeId, source);
    const t = this.tiles.get(key);
    if (!t || t.track !== track) return;
    if (source === "screen") this._remove(key);
    else t.setTrack(null);
  }

  setSpeaking(ids, selfId) {
    const speaking = new Set(ids);
    for (const [key, tile] of this.tiles) {
      if (tile.source !== "camera") continue;
      const id = key === "self:camera" ? selfId : key.slice(0, -":camera".length);
      tile.setSpeaking(speaking.has(id));
    }
  }

  clear() {
    for (const key of [...this.tiles.keys()]) this._remove(key);
  }

  _remove(key) {
    const t = this.tiles.get(key);
    if (!t) return;
    t.setTrack(null);
    t.root.remove();
    this.tiles.delete(key);
    this._relayout();
  }
}
