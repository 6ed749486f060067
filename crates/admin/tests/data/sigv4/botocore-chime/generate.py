"""Sign real chime admin-API requests with botocore (no network) and write them as SigV4 test vectors.

Each case becomes <out>/<case>/<case>.req (request line, headers without Authorization, blank line, body),
<case>.authz (the Authorization header botocore produced), <case>.creq and <case>.sts (botocore's own
canonical request and string to sign, captured from its debug log).
"""
import datetime, logging, os, sys
from unittest import mock
import botocore.session, botocore.auth
from botocore.awsrequest import AWSResponse

OUT = sys.argv[1]
FIXED = datetime.datetime(2015, 8, 30, 12, 36, 0)

class Capture(logging.Handler):
    def __init__(self):
        super().__init__(); self.creq = None; self.sts = None
    def emit(self, record):
        if record.msg.startswith('CanonicalRequest:'): self.creq = record.args[0] if isinstance(record.args, tuple) else record.args
        if record.msg.startswith('StringToSign:'): self.sts = record.args[0] if isinstance(record.args, tuple) else record.args

cap = Capture(); log = logging.getLogger('botocore.auth'); log.setLevel(logging.DEBUG); log.addHandler(cap)

def client(token=None):
    s = botocore.session.get_session()
    return s.create_client('chime', region_name='us-east-1', endpoint_url='https://admin.convene.example',
                           aws_access_key_id='AKIDEXAMPLE', aws_secret_access_key='wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY',
                           aws_session_token=token)

def run(case, c, op, **kw):
    sent = {}
    def before_send(request, **_):
        sent['r'] = request
        return AWSResponse(request.url, 200, {}, None)
    c.meta.events.register('before-send', before_send)
    with mock.patch('botocore.auth.get_current_datetime', return_value=FIXED):
        try:
            getattr(c, op)(**kw)
        except Exception as e:  # the fake response has no body; signing already happened
            pass
    r = sent['r']
    from urllib.parse import urlsplit
    u = urlsplit(r.url)
    target = u.path + (('?' + u.query) if u.query else '')
    d = os.path.join(OUT, case); os.makedirs(d, exist_ok=True)
    lines = [f'{r.method} {target} HTTP/1.1', f'Host:{u.netloc}']
    authz = None
    for k, v in r.headers.items():
        v = v.decode() if isinstance(v, bytes) else v
        if k.lower() == 'authorization': authz = v; continue
        if k.lower() == 'user-agent': v = v.split(' ')[0]  # unsigned; the rest names the generating machine
        lines.append(f'{k}:{v}')
    body = r.body or b''
    if isinstance(body, str): body = body.encode()
    with open(os.path.join(d, case + '.req'), 'wb') as f:
        f.write(('\n'.join(lines) + '\n\n').encode() + body)
    for ext, val in (('authz', authz), ('creq', cap.creq), ('sts', cap.sts)):
        with open(os.path.join(d, f'{case}.{ext}'), 'w') as f: f.write(val)

run('chime-list-accounts-query', client(), 'list_accounts', Name='Example Corp & Co', UserEmail='a+b@example.com', MaxResults=10)
run('chime-create-account-body', client(), 'create_account', Name='Convene Ünïcode')
run('chime-get-user-encoded-path', client(), 'get_user', AccountId='acct 1', UserId='user@example.com')
run('chime-suspend-users-operation-query', client(), 'batch_suspend_user', AccountId='acct-1', UserIdList=['u1', 'u2'])
run('chime-get-account-session-token', client(token='FQoGZXIvYXdzEXAMPLETOKEN'), 'get_account', AccountId='acct-1')
