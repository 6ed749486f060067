//! SDP offer/answer for room systems (RFC 3264): the audio line, and the main video line when the
//! device offers H.264 with packetization mode 1 (what WebRTC senders packetize).
//!
//! A small tolerant reader of our own rather than a crate: of the three SDP crates tried
//! (docs/research/sip-stack.md), webrtc-rs `sdp` rejects offers with a BFCP m-line, Mozilla's
//! `webrtc-sdp` drops crypto and BFCP lines, and `ezk-sdp-types` keeps everything but panics on a
//! valid crypto lifetime (`|2^48|`). The answer only needs each m-line's media, port, proto and format
//! list, `rtpmap`/`fmtp` of the audio line, its direction and the connection address: that reader is
//! ~150 lines, never panics, and skips whatever it does not know instead of refusing the offer.

use std::fmt::Write as _;
use std::net::IpAddr;

/// Most lines and m-lines we read from one offer (room systems send well under 100 lines).
const MAX_LINES: usize = 1000;
const MAX_MEDIA: usize = 16;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SdpError {
    #[error("the body is not SDP text")]
    NotText,
    #[error("SDP without v=0")]
    NoVersion,
    #[error("SDP has no media")]
    NoMedia,
    #[error("SDP too large")]
    TooLarge,
    #[error(
        "no audio codec in common (we take Opus, G.722, PCMU, PCMA over RTP/AVP; RTP/SAVP with SDES over TLS)"
    )]
    NoCommonCodec,
}

/// Direction attribute of a media line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    SendRecv,
    SendOnly,
    RecvOnly,
    Inactive,
}

impl Direction {
    fn answer(self) -> Self {
        match self {
            Self::SendOnly => Self::RecvOnly,
            Self::RecvOnly => Self::SendOnly,
            d => d,
        }
    }
    fn attr(self) -> &'static str {
        match self {
            Self::SendRecv => "sendrecv",
            Self::SendOnly => "sendonly",
            Self::RecvOnly => "recvonly",
            Self::Inactive => "inactive",
        }
    }
}

/// One `a=rtpmap` (or a static payload type's implied one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Format {
    pub pt: u8,
    pub name: String,
    pub clock: u32,
    /// The encoding parameters after the clock rate (channels), as offered.
    pub params: Option<String>,
    /// The `a=fmtp` text, exactly as offered.
    pub fmtp: Option<String>,
}

/// One m-line of an offer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Media {
    pub kind: String,
    pub port: u16,
    pub proto: String,
    /// The format list exactly as offered (payload types, or `*` for BFCP).
    pub fmts: Vec<String>,
    pub formats: Vec<Format>,
    pub direction: Direction,
    pub connection: Option<IpAddr>,
    /// `a=content` (RFC 4796): `main` for the camera, `slides` for BFCP content; None if absent.
    pub content: Option<String>,
    /// `a=crypto` lines (RFC 4568 SDES) in the device's order.
    pub crypto: Vec<Crypto>,
    /// The line's `b=TIAS` (RFC 3890) or `b=AS` bandwidth, in kbps.
    pub bandwidth_kbps: Option<u32>,
}

/// One `a=crypto` line: `tag suite inline:KEY||SALT[|lifetime][|MKI:len]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Crypto {
    pub tag: u32,
    pub suite: String,
    /// The master key and salt, base64-decoded (30 bytes for the AES-128 suites).
    pub key: Vec<u8>,
    /// An MKI was given (`|MKI:len`): we do not use MKIs, so such a line is not taken.
    pub mki: bool,
    /// Session parameters follow the key (e.g. `UNENCRYPTED_SRTCP`, RFC 4568 §6.3): we apply none,
    /// so such a line is not taken.
    pub session_params: bool,
}

/// SRTP suites we take (RFC 4568 §6.2), strongest authentication first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SrtpSuite {
    AesCm128HmacSha1_80,
    AesCm128HmacSha1_32,
}

impl SrtpSuite {
    const PREFERENCE: [SrtpSuite; 2] = [Self::AesCm128HmacSha1_80, Self::AesCm128HmacSha1_32];

    pub fn name(self) -> &'static str {
        match self {
            Self::AesCm128HmacSha1_80 => "AES_CM_128_HMAC_SHA1_80",
            Self::AesCm128HmacSha1_32 => "AES_CM_128_HMAC_SHA1_32",
        }
    }
}

/// Master key (16) and salt (14) of the AES-128 suites.
pub const SRTP_KEY_LEN: usize = 30;

/// Our SRTP master keys for a call's audio and video, drawn when a call over TLS arrives.
#[derive(Clone, PartialEq, Eq)]
pub struct SrtpKeys {
    pub audio: [u8; SRTP_KEY_LEN],
    pub video: [u8; SRTP_KEY_LEN],
}

impl std::fmt::Debug for SrtpKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SrtpKeys(..)") // never in logs
    }
}

/// What SDES agreed for one m-line: both directions' master keys.
#[derive(Clone, PartialEq, Eq)]
pub struct SrtpNegotiated {
    pub tag: u32,
    pub suite: SrtpSuite,
    /// The device's key: it encrypts with it, we decrypt.
    pub remote_key: [u8; SRTP_KEY_LEN],
    /// Ours: we encrypt with it, it decrypts.
    pub local_key: [u8; SRTP_KEY_LEN],
}

impl std::fmt::Debug for SrtpNegotiated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SrtpNegotiated")
            .field("tag", &self.tag)
            .field("suite", &self.suite)
            .finish_non_exhaustive()
    }
}

/// The device's first crypto line we can take, with our key for it.
fn choose_crypto(m: &Media, local: &[u8; SRTP_KEY_LEN]) -> Option<SrtpNegotiated> {
    SrtpSuite::PREFERENCE.into_iter().find_map(|suite| {
        let c = m
            .crypto
            .iter()
            .find(|c| c.suite.eq_ignore_ascii_case(suite.name()) && !c.mki && !c.session_params)?;
        Some(SrtpNegotiated {
            tag: c.tag,
            suite,
            remote_key: c.key.as_slice().try_into().ok()?,
            local_key: *local,
        })
    })
}

/// Is this m-line's transport one we can answer, and with SRTP? `None`: not usable. SRTP profiles
/// (`RTP/SAVP`) need keys (a call over TLS: SDES keys in clear text would protect nothing) and a crypto
/// line we take; a plain profile with crypto lines (best-effort SRTP, as some room systems offer) gets
/// SRTP when we have keys, plain RTP otherwise.
fn transport(m: &Media, local: Option<&[u8; SRTP_KEY_LEN]>) -> Option<Option<SrtpNegotiated>> {
    let srtp = local.and_then(|k| choose_crypto(m, k));
    match m.proto.as_str() {
        "RTP/AVP" | "RTP/AVPF" => Some(srtp),
        "RTP/SAVP" | "RTP/SAVPF" => srtp.map(Some),
        _ => None,
    }
}

/// A parsed offer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offer {
    pub connection: Option<IpAddr>,
    pub media: Vec<Media>,
}

/// Audio codecs we can take, best first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    Opus,
    G722,
    Pcmu,
    Pcma,
}

impl Codec {
    const PREFERENCE: [Codec; 4] = [Codec::Opus, Codec::G722, Codec::Pcmu, Codec::Pcma];

    pub fn name(self) -> &'static str {
        match self {
            Self::Opus => "opus",
            Self::G722 => "G722",
            Self::Pcmu => "PCMU",
            Self::Pcma => "PCMA",
        }
    }

    fn matches(self, f: &Format) -> bool {
        let n = f.name.as_str();
        match self {
            Self::Opus => n.eq_ignore_ascii_case("opus") && f.clock == 48000,
            Self::G722 => n.eq_ignore_ascii_case("G722") && f.clock == 8000,
            Self::Pcmu => n.eq_ignore_ascii_case("PCMU") && f.clock == 8000,
            Self::Pcma => n.eq_ignore_ascii_case("PCMA") && f.clock == 8000,
        }
    }
}

/// What was agreed for the call's audio.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    pub codec: Codec,
    pub format: Format,
    /// RFC 4733 telephone-event payload type, if the device offered it.
    pub telephone_event: Option<u8>,
    /// RFC 3389 comfort noise payload type (`CN/8000`), if the device offered it beside an 8 kHz-clock
    /// codec (Opus has its own).
    pub comfort_noise: Option<u8>,
    /// Where the device wants its audio (None: on hold with 0.0.0.0, or not given).
    pub remote: Option<(IpAddr, u16)>,
    pub direction: Direction,
    /// The camera line, when the device offered H.264 we can take (boxed: most calls are audio-only,
    /// and this travels inside every call event).
    pub video: Option<Box<VideoNegotiated>>,
    /// SDES-SRTP of the audio line, when agreed.
    pub srtp: Option<SrtpNegotiated>,
}

/// What was agreed for the call's main video: H.264, passed through without transcoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VideoNegotiated {
    /// The device's H.264 format (payload type and fmtp exactly as offered).
    pub format: Format,
    /// Where the device wants its video.
    pub remote: Option<(IpAddr, u16)>,
    pub direction: Direction,
    /// Its m-line's index in the offer.
    pub index: usize,
    /// SDES-SRTP of the video line, when agreed.
    pub srtp: Option<SrtpNegotiated>,
    /// The most video the device wants to receive (kbps), from its line's bandwidth and its H.264
    /// `max-br`/`max-fs`; None if it says nothing.
    pub max_kbps: Option<u32>,
}

impl VideoNegotiated {
    /// The `profile-level-id` the device offered, lowercase hex (RFC 6184 §8.1).
    pub fn profile_level_id(&self) -> Option<String> {
        fmtp_value(self.format.fmtp.as_deref()?, "profile-level-id").map(|v| v.to_ascii_lowercase())
    }
}

/// The video rate a receiver of at most `max_fs` macroblocks per frame (RFC 6184 §8.1) can use: the
/// usual rate of the largest picture that fits, so the speaker's simulcast layer near that size is
/// chosen (QCIF 99, CIF 396, VGA-ish 1200, 720p 3600 macroblocks).
fn kbps_for_frame_size(max_fs: u32) -> Option<u32> {
    match max_fs {
        0..=99 => Some(128),
        100..=396 => Some(384),
        397..=1200 => Some(768),
        1201..=3600 => Some(2000),
        _ => None,
    }
}

/// The largest frame (macroblocks) an H.264 level allows (ITU-T H.264 Table A-1, MaxFS), from the
/// `level_idc` byte of `profile-level-id`; level 1b (11 with constraint_set3) is 99 like level 1.
fn level_max_frame_size(profile_level_id: &str) -> Option<u32> {
    let level_idc = u8::from_str_radix(profile_level_id.get(4..6)?, 16).ok()?;
    Some(match level_idc {
        9 | 10 => 99,
        11..=20 => 396,
        21 => 792,
        22 | 30 => 1620,
        31 => 3600,
        32 => 5120,
        40 | 41 => 8192,
        42 => 8704,
        _ => return None,
    })
}

/// The device's wish for received video, the least of: its line's bandwidth, `max-br` (RFC 6184: in
/// units of 1000 bit/s for the VCL, close enough to kbps for a cap), and what its largest frame implies:
/// `max-fs` if given (RFC 6184 §8.1: it may only raise the level's), else its level's.
fn video_max_kbps(m: &Media, format: &Format) -> Option<u32> {
    let fmtp = format.fmtp.as_deref().unwrap_or("");
    let number = |name| fmtp_value(fmtp, name).and_then(|v| v.parse::<u32>().ok());
    let frame_size = number("max-fs")
        .or_else(|| fmtp_value(fmtp, "profile-level-id").and_then(level_max_frame_size));
    [
        m.bandwidth_kbps,
        number("max-br"),
        frame_size.and_then(kbps_for_frame_size),
    ]
    .into_iter()
    .flatten()
    .min()
}

/// One `name=value` of an fmtp line (parameters are separated by `;`, names are case-insensitive).
fn fmtp_value<'a>(fmtp: &'a str, name: &str) -> Option<&'a str> {
    fmtp.split(';').find_map(|p| {
        let (n, v) = p.split_once('=')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// The main video line we take: the first `video` m-line that is not content (BFCP slides) and offers
/// H.264 with packetization mode 1. Mode 0 (one NAL unit per packet) cannot carry what browsers send
/// (fragmented NAL units), so a mode-0-only device gets audio only.
fn choose_video(offer: &Offer, keys: Option<&SrtpKeys>) -> Option<VideoNegotiated> {
    let (index, m) = offer
        .media
        .iter()
        .enumerate()
        .find(|(_, m)| m.kind == "video" && m.content.as_deref().is_none_or(|c| c == "main"))?;
    if m.port == 0 {
        return None;
    }
    let srtp = transport(m, keys.map(|k| &k.video))?;
    let format = m.formats.iter().find(|f| {
        f.name.eq_ignore_ascii_case("H264")
            && f.clock == 90_000
            && m.fmts.iter().any(|x| x.parse::<u8>() == Ok(f.pt))
            && f.fmtp
                .as_deref()
                .and_then(|p| fmtp_value(p, "packetization-mode"))
                == Some("1")
    })?;
    let ip = m.connection.or(offer.connection);
    Some(VideoNegotiated {
        max_kbps: video_max_kbps(m, format),
        format: format.clone(),
        remote: ip.filter(|ip| !ip.is_unspecified()).map(|ip| (ip, m.port)),
        direction: m.direction,
        index,
        srtp,
    })
}

fn static_format(pt: u8) -> Option<Format> {
    let (name, clock) = match pt {
        0 => ("PCMU", 8000),
        8 => ("PCMA", 8000),
        9 => ("G722", 8000),
        13 => ("CN", 8000),
        _ => return None,
    };
    Some(Format {
        pt,
        name: name.into(),
        clock,
        params: None,
        fmtp: None,
    })
}

/// Read an offer, skipping lines we do not understand.
pub fn parse(body: &[u8]) -> Result<Offer, SdpError> {
    let text = std::str::from_utf8(body).map_err(|_| SdpError::NotText)?;
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
    if lines.next() != Some("v=0") {
        return Err(SdpError::NoVersion);
    }
    let mut offer = Offer {
        connection: None,
        media: Vec::new(),
    };
    for (i, line) in lines.enumerate() {
        if i > MAX_LINES {
            return Err(SdpError::TooLarge);
        }
        let Some((kind, value)) = line.split_once('=') else {
            continue;
        };
        match kind {
            "c" => {
                let addr = connection(value);
                match offer.media.last_mut() {
                    Some(m) => m.connection = addr,
                    None => offer.connection = addr,
                }
            }
            "m" => {
                if offer.media.len() >= MAX_MEDIA {
                    return Err(SdpError::TooLarge);
                }
                let mut parts = value.split_whitespace();
                let (Some(kind), Some(port), Some(proto)) =
                    (parts.next(), parts.next(), parts.next())
                else {
                    continue;
                };
                // "port/count" is allowed; only the port matters to us.
                let port = port
                    .split('/')
                    .next()
                    .and_then(|p| p.parse().ok())
                    .unwrap_or(0);
                let fmts: Vec<String> = parts.map(str::to_owned).collect();
                let formats = fmts
                    .iter()
                    .filter_map(|f| f.parse::<u8>().ok())
                    .filter_map(static_format)
                    .collect();
                offer.media.push(Media {
                    kind: kind.to_owned(),
                    port,
                    proto: proto.to_owned(),
                    fmts,
                    formats,
                    direction: Direction::SendRecv,
                    connection: None,
                    content: None,
                    crypto: Vec::new(),
                    bandwidth_kbps: None,
                });
            }
            "a" => {
                let Some(m) = offer.media.last_mut() else {
                    continue;
                };
                attribute(m, value);
            }
            "b" => {
                // Media-level only: a session-level b= covers every line together.
                if let (Some(m), Some(kbps)) = (offer.media.last_mut(), bandwidth(value)) {
                    // TIAS is the more precise of the two (RFC 3890); keep the smaller if both appear.
                    m.bandwidth_kbps = Some(m.bandwidth_kbps.map_or(kbps, |b| b.min(kbps)));
                }
            }
            _ => {}
        }
    }
    if offer.media.is_empty() {
        return Err(SdpError::NoMedia);
    }
    Ok(offer)
}

/// `TIAS:6000000` (bits/s) or `AS:768` (kbps), in kbps.
fn bandwidth(value: &str) -> Option<u32> {
    let (kind, n) = value.split_once(':')?;
    let n: u64 = n.trim().parse().ok()?;
    let kbps = match kind.trim() {
        "TIAS" => n / 1000,
        "AS" => n,
        _ => return None,
    };
    Some(kbps.min(u64::from(u32::MAX)) as u32)
}

/// `1 AES_CM_128_HMAC_SHA1_80 inline:KEYSALT|2^20|1:32 [session params]`; None if unreadable.
fn crypto(value: &str) -> Option<Crypto> {
    use base64::Engine as _;
    let mut parts = value.split_whitespace();
    let tag = parts.next()?.parse().ok()?;
    let suite = parts.next()?.to_owned();
    let inline = parts.next()?.strip_prefix("inline:")?;
    let mut fields = inline.split('|');
    let key = base64::engine::general_purpose::STANDARD
        .decode(fields.next()?)
        .ok()?;
    // After the key: an optional lifetime, then an optional "MKI:length" (the one with a colon).
    let mki = fields.any(|f| f.contains(':'));
    Some(Crypto {
        tag,
        suite,
        key,
        mki,
        session_params: parts.next().is_some(),
    })
}

fn connection(value: &str) -> Option<IpAddr> {
    let mut parts = value.split_whitespace();
    let (_net, _family, addr) = (parts.next()?, parts.next()?, parts.next()?);
    // Multicast "addr/ttl" is not for us, but keep the address part.
    addr.split('/').next()?.parse().ok()
}

fn attribute(m: &mut Media, value: &str) {
    let (name, rest) = value.split_once(':').unwrap_or((value, ""));
    match name {
        "sendrecv" => m.direction = Direction::SendRecv,
        "sendonly" => m.direction = Direction::SendOnly,
        "recvonly" => m.direction = Direction::RecvOnly,
        "inactive" => m.direction = Direction::Inactive,
        "content" => m.content = Some(rest.trim().to_owned()),
        "crypto" => {
            if let Some(c) = crypto(rest) {
                m.crypto.push(c);
            }
        }
        "rtpmap" => {
            let Some((pt, enc)) = rest.split_once(' ') else {
                return;
            };
            let Ok(pt) = pt.trim().parse::<u8>() else {
                return;
            };
            let mut enc = enc.trim().splitn(3, '/');
            let (Some(name), Some(clock)) = (enc.next(), enc.next()) else {
                return;
            };
            let Ok(clock) = clock.parse() else {
                return;
            };
            let format = Format {
                pt,
                name: name.to_owned(),
                clock,
                params: enc.next().map(str::to_owned),
                fmtp: None,
            };
            match m.formats.iter_mut().find(|f| f.pt == pt) {
                Some(f) => {
                    let fmtp = f.fmtp.take();
                    *f = Format { fmtp, ..format };
                }
                None => m.formats.push(format),
            }
        }
        "fmtp" => {
            let Some((pt, params)) = rest.split_once(' ') else {
                return;
            };
            let Ok(pt) = pt.trim().parse::<u8>() else {
                return;
            };
            match m.formats.iter_mut().find(|f| f.pt == pt) {
                Some(f) => f.fmtp = Some(params.trim().to_owned()),
                // Before its rtpmap (SDP does not order attributes): kept until the rtpmap names it;
                // nameless, it matches no codec if none comes.
                None => m.formats.push(Format {
                    pt,
                    name: String::new(),
                    clock: 0,
                    params: None,
                    fmtp: Some(params.trim().to_owned()),
                }),
            }
        }
        _ => {}
    }
}

/// Our side of the session, kept across re-INVITEs so `o=` versions increase (RFC 3264 §8).
#[derive(Debug, Clone)]
pub struct Session {
    pub id: u64,
    pub version: u64,
    pub ip: IpAddr,
    /// The call's audio RTP port; its video uses the next even port ([`Session::video_port`]).
    pub port: u16,
    /// Our SDES-SRTP keys, for a call that came over TLS (None: plain RTP only).
    pub srtp: Option<SrtpKeys>,
}

impl Session {
    /// Where we take a call's video: two above its audio port (RTCP of each at +1), bound with it.
    pub fn video_port(&self) -> u16 {
        self.port.wrapping_add(2)
    }
}

/// The audio line we take, and the codec on it. `keys` are ours for SDES-SRTP (a call over TLS); without
/// them only plain RTP lines are taken.
pub fn choose(offer: &Offer, keys: Option<&SrtpKeys>) -> Result<(usize, Negotiated), SdpError> {
    for (i, m) in offer.media.iter().enumerate() {
        if m.kind != "audio" || m.port == 0 {
            continue;
        }
        let Some(srtp) = transport(m, keys.map(|k| &k.audio)) else {
            continue;
        };
        // The device's order among formats of the same codec, ours among codecs.
        for codec in Codec::PREFERENCE {
            if let Some(format) = m
                .formats
                .iter()
                .find(|f| codec.matches(f) && m.fmts.iter().any(|x| x.parse::<u8>() == Ok(f.pt)))
            {
                let telephone_event = m
                    .formats
                    .iter()
                    .filter(|f| f.name.eq_ignore_ascii_case("telephone-event"))
                    .filter(|f| m.fmts.iter().any(|x| x.parse::<u8>() == Ok(f.pt)))
                    .min_by_key(|f| f.clock != format.clock)
                    .map(|f| f.pt);
                let comfort_noise = m
                    .formats
                    .iter()
                    .filter(|f| f.name.eq_ignore_ascii_case("CN") && f.clock == 8000)
                    .filter(|_| format.clock == 8000 && codec != Codec::Opus)
                    .find(|f| m.fmts.iter().any(|x| x.parse::<u8>() == Ok(f.pt)))
                    .map(|f| f.pt);
                let ip = m.connection.or(offer.connection);
                let remote = ip.filter(|ip| !ip.is_unspecified()).map(|ip| (ip, m.port));
                return Ok((
                    i,
                    Negotiated {
                        codec,
                        format: format.clone(),
                        telephone_event,
                        comfort_noise,
                        remote,
                        direction: m.direction,
                        video: choose_video(offer, keys).map(Box::new),
                        srtp,
                    },
                ));
            }
        }
    }
    Err(SdpError::NoCommonCodec)
}

/// Write the answer: the chosen audio line with its codec and telephone-event echoed exactly as
/// offered, the main video line with the device's H.264 format echoed (when it offered one we take),
/// every other m-line declined with port 0 (BFCP, content video and H.224 come later).
pub fn answer(offer: &Offer, session: &Session) -> Result<(String, Negotiated), SdpError> {
    let (chosen, negotiated) = choose(offer, session.srtp.as_ref())?;
    let family = if session.ip.is_ipv4() { "IP4" } else { "IP6" };
    let mut s = String::new();
    let _ = write!(
        s,
        "v=0\r\no=convene {} {} IN {family} {ip}\r\ns=Convene\r\nc=IN {family} {ip}\r\nt=0 0\r\n",
        session.id,
        session.version,
        ip = session.ip
    );
    let extra_formats: Vec<&Format> = [negotiated.telephone_event, negotiated.comfort_noise]
        .into_iter()
        .flatten()
        .filter_map(|pt| offer.media[chosen].formats.iter().find(|f| f.pt == pt))
        .collect();
    for (i, m) in offer.media.iter().enumerate() {
        if let Some(video) = negotiated.video.as_ref().filter(|v| v.index == i) {
            let f = &video.format;
            let _ = write!(
                s,
                "m=video {} {} {}\r\na=rtpmap:{} {}/{}\r\n",
                session.video_port(),
                m.proto,
                f.pt,
                f.pt,
                f.name,
                f.clock
            );
            if let Some(fmtp) = &f.fmtp {
                let _ = write!(s, "a=fmtp:{} {fmtp}\r\n", f.pt);
            }
            // Keyframe requests both ways: PLI, and FIR (RFC 5104), which room systems prefer.
            let _ = write!(
                s,
                "a=rtcp-fb:{pt} nack pli\r\na=rtcp-fb:{pt} ccm fir\r\na=content:main\r\n",
                pt = f.pt
            );
            write_crypto(&mut s, video.srtp.as_ref());
            let _ = write!(s, "a={}\r\n", video.direction.answer().attr());
            continue;
        }
        if i != chosen {
            let fmts = if m.fmts.is_empty() {
                "0".to_owned()
            } else {
                m.fmts.join(" ")
            };
            let _ = write!(s, "m={} 0 {} {fmts}\r\n", m.kind, m.proto);
            continue;
        }
        let f = &negotiated.format;
        let mut pts = f.pt.to_string();
        for extra in &extra_formats {
            let _ = write!(pts, " {}", extra.pt);
        }
        let _ = write!(s, "m=audio {} {} {pts}\r\n", session.port, m.proto);
        for f in std::iter::once(f).chain(extra_formats.iter().copied()) {
            let _ = write!(s, "a=rtpmap:{} {}/{}", f.pt, f.name, f.clock);
            if let Some(p) = &f.params {
                let _ = write!(s, "/{p}");
            }
            s.push_str("\r\n");
            if let Some(fmtp) = &f.fmtp {
                let _ = write!(s, "a=fmtp:{} {fmtp}\r\n", f.pt);
            }
        }
        write_crypto(&mut s, negotiated.srtp.as_ref());
        let _ = write!(
            s,
            "a=ptime:20\r\na={}\r\n",
            negotiated.direction.answer().attr()
        );
    }
    Ok((s, negotiated))
}

/// Our crypto line answering the device's (its tag and suite, our key; RFC 4568 §7.1.2).
fn write_crypto(s: &mut String, srtp: Option<&SrtpNegotiated>) {
    use base64::Engine as _;
    if let Some(c) = srtp {
        let key = base64::engine::general_purpose::STANDARD.encode(c.local_key);
        let _ = write!(s, "a=crypto:{} {} inline:{key}\r\n", c.tag, c.suite.name());
    }
}

/// Our offer, for a caller that sent none (an INVITE without SDP, "late offer"): every audio codec we
/// take, best first, and telephone-event. The device's answer comes in its ACK ([`read_answer`]).
pub fn offer(session: &Session) -> String {
    let family = if session.ip.is_ipv4() { "IP4" } else { "IP6" };
    format!(
        "v=0\r\no=convene {id} {version} IN {family} {ip}\r\ns=Convene\r\nc=IN {family} {ip}\r\nt=0 0\r\n\
         m=audio {port} RTP/AVP 96 9 0 8 101\r\n\
         a=rtpmap:96 opus/48000/2\r\na=fmtp:96 useinbandfec=1\r\n\
         a=rtpmap:9 G722/8000\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n\
         a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\n\
         a=ptime:20\r\na=sendrecv\r\n",
        id = session.id,
        version = session.version,
        ip = session.ip,
        port = session.port,
    )
}

/// What the device's answer to [`offer`] agreed on.
pub fn read_answer(body: &[u8]) -> Result<Negotiated, SdpError> {
    let answer = parse(body)?;
    // Formats in an answer use our payload types; the offer's static ones need no rtpmap.
    choose(&answer, None).map(|(_, negotiated)| negotiated)
}
