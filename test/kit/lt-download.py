#!/usr/bin/python3
"""Downloads one torrent (file or magnet) with libtorrent, the engine of qBittorrent and
Deluge, and prints one JSON line at the end. Used by tests, the demo and the benchmarks as a
BitTorrent client that is not gribswarm's code. Run with Debian's /usr/bin/python3.
The line also says when the first payload byte arrived and whether a peer connection was
RC4-encrypted (libtorrent offers encryption by default; webtorrent has none).

usage: lt-download.py TORRENT_OR_MAGNET SAVE_DIR TIMEOUT_SECONDS [--no-utp] [--no-webseed] [--peer HOST:PORT]
"""
import json, sys, time
import libtorrent as lt

source, save_dir, timeout = sys.argv[1], sys.argv[2], float(sys.argv[3])
flags = sys.argv[4:]
settings = {
    'listen_interfaces': '127.0.0.1:0',
    'enable_dht': False, 'enable_lsd': False, 'enable_upnp': False, 'enable_natpmp': False,
    'allow_multiple_connections_per_ip': True,
    'enable_outgoing_utp': '--no-utp' not in flags, 'enable_incoming_utp': '--no-utp' not in flags,
    'alert_mask': lt.alert.category_t.error_notification | lt.alert.category_t.status_notification,
}
session = lt.session(settings)
params = lt.parse_magnet_uri(source) if source.startswith('magnet:') else lt.add_torrent_params()
if not source.startswith('magnet:'):
    params.ti = lt.torrent_info(source)
    if '--no-webseed' in flags:
        params.ti.set_web_seeds([])
params.save_path = save_dir
handle = session.add_torrent(params)
if '--peer' in flags:
    host, port = flags[flags.index('--peer') + 1].rsplit(':', 1)
    handle.connect_peer((host, int(port)))
start = time.time()
status = handle.status()
transports = set()
encrypted = False
first_byte = None
# peer_info::utp_socket (bit 17, between holepunched = 1<<15 and rc4_encrypted = 1<<19); not exported to Python.
UTP_SOCKET = 1 << 17
RC4_ENCRYPTED = 1 << 19
while time.time() - start < timeout:
    status = handle.status()
    if first_byte is None and status.total_payload_download > 0:
        first_byte = time.time() - start
    for peer in handle.get_peer_info():
        transports.add('utp' if int(peer.flags) & UTP_SOCKET else 'tcp')
        encrypted = encrypted or bool(int(peer.flags) & RC4_ENCRYPTED)
    if status.is_seeding or status.state == lt.torrent_status.seeding:
        break
    time.sleep(0.05)
elapsed = time.time() - start
done = status.is_seeding or status.state == lt.torrent_status.seeding
print(json.dumps({'done': bool(done), 'seconds': elapsed, 'bytes': status.total_wanted_done,
                  'name': handle.torrent_file().name() if handle.torrent_file() else None,
                  'transports': sorted(transports), 'rc4': encrypted,
                  'first_byte_seconds': first_byte,
                  'error': str(status.errc.message()) if status.errc.value() else None}))
sys.exit(0 if done else 1)
