"""Records the SDP offer a real baresip (Debian's, 1.0.0) puts in its INVITE, for the fixtures beside
this script: a loopback UDP socket plays the server, answers 486 so baresip gives up, and the body
is written to NAME.sdp in the current directory.

    python3 capture.py audio "" ""                                  # default codecs
    python3 capture.py video "avcodec.so,fakevideo.so" ""           # plus H.264/H.263/... video
    python3 capture.py srtp "srtp.so" ";mediaenc=srtp-mand"         # SDES-SRTP mandatory

Real room systems' offers (Cisco, Polycom) should be captured the same way when we have them.
"""
import socket, subprocess, sys, os, math, struct, wave, time
name, extra_modules, account_params = sys.argv[1], sys.argv[2].split(",") if sys.argv[2] else [], sys.argv[3]
srv = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); srv.bind(("127.0.0.1", 0)); port = srv.getsockname()[1]
srv.settimeout(10)
import tempfile
conf = tempfile.mkdtemp(prefix=f"baresip-{name}-"); os.makedirs(conf, exist_ok=True)
with wave.open(f"{conf}/tone.wav", "wb") as w:
    w.setnchannels(2); w.setsampwidth(2); w.setframerate(8000)
    w.writeframes(b"".join(struct.pack("<hh", v, v) for v in (int(8000*math.sin(2*math.pi*440*i/8000)) for i in range(8000))))
open(f"{conf}/accounts","w").write(f"<sip:room@127.0.0.1>;regint=0;answermode=manual{account_params}\n")
open(f"{conf}/contacts","w").write("")
mods = ["g711.so","g722.so","opus.so","aufile.so", *extra_modules]
video = "video_source fakevideo,nil\nvideo_display fakevideo,nil\n" if "fakevideo.so" in extra_modules else ""
open(f"{conf}/config","w").write(f"""poll_method epoll
sip_listen 127.0.0.1:{port+7}
net_interface 127.0.0.1
audio_player aufile,/dev/null
audio_source aufile,{conf}/tone.wav
ausrc_srate 8000
auplay_srate 8000
{video}module_path /usr/lib/baresip/modules
""" + "".join(f"module {m}\n" for m in mods) + "module_app account.so\nmodule_app menu.so\nmodule_app contact.so\n")
p = subprocess.Popen(["baresip","-f",conf,"-e",f"/dial sip:1234567890@127.0.0.1:{port}","-t","3"], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
data, addr = srv.recvfrom(65536)
msg = data.decode()
head, body = msg.split("\r\n\r\n", 1)
# answer 486 so baresip stops
hdrs = [l for l in head.split("\r\n")[1:] if l.split(":")[0].lower() in ("via","from","to","call-id","cseq")]
srv.sendto(("SIP/2.0 486 Busy Here\r\n" + "\r\n".join(h + (";tag=x" if h.lower().startswith("to:") else "") for h in hdrs) + "\r\nContent-Length: 0\r\n\r\n").encode(), addr)
p.wait(timeout=15)
with open(f"{name}.sdp", "w", newline="") as f:
    f.write(body)
print(body)
