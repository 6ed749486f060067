// The user-facing HTTP API (docs/web-api.md): sign-in session, invitations, meetings, join tokens.
// Every call returns the parsed JSON body or throws an Error whose message is the server's own
// human-readable explanation (and whose `code` is its stable error code).

async function call(method, path, body) {
  const init = { method, credentials: "same-origin", headers: {} };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const res = await fetch(path, init);
  if (res.status === 204) return null;
  let data = null;
  try {
    data = await res.json();
  } catch (_) { /* not JSON: reported below */ }
  if (!res.ok) {
    const err = new Error(data?.message || `${method} ${path} failed with HTTP ${res.status}`);
    err.code = data?.error || `http_${res.status}`;
    err.status = res.status;
    throw err;
  }
  return data;
}

/** The signed-in user, or null. */
export async function currentUser() {
  try {
    return (await call("GET", "/v1/session")).user;
  } catch (e) {
    if (e.status === 401) return null;
    throw e;
  }
}

export async function signIn(email, password) {
  return (await call("POST", "/v1/session", { email, password })).user;
}

export async function signOut() {
  await call("DELETE", "/v1/session");
}

/** Finishes registration with the token of an invitation link or of a sign-up link. */
export async function register(link, name, password) {
  return (await call("POST", "/v1/register", { ...link, name, password })).user;
}

/** Starts a self sign-up: the server e-mails a link to finish it. */
export async function signUp(email) {
  return call("POST", "/v1/signup", { email });
}

export async function myMeetings() {
  return call("GET", "/v1/meetings");
}

/** Creates an instant meeting, or a scheduled one when `schedule` is given. */
export async function createMeeting(schedule) {
  const body = schedule ? { kind: "scheduled", ...schedule } : { kind: "instant" };
  return (await call("POST", "/v1/meetings", body)).meeting;
}

/** Asks to join: { token, meeting_id, title, host, attendee_id, name, role, expires_at }. */
export async function requestJoin(meetingId, name) {
  const body = name ? { name } : {};
  return call("POST", `/v1/meetings/${encodeURIComponent(meetingId)}/join`, body);
}

/** Rates a meeting after leaving it: `token` is the join token used for it, `rating` "up" or "down". */
export async function sendFeedback(token, rating) {
  await call("POST", "/v1/feedback", { token, rating });
}
