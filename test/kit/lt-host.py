#!/usr/bin/python3
"""A stock libtorrent client (the engine of qBittorrent and Deluge) as a long-running host,
started inside a network namespace by test/kit/ns-clients.ts. Default settings except what a
closed test network needs: no DHT, no local service discovery, no UPnP or NAT-PMP. It listens
for peers on libtorrent's default interfaces (0.0.0.0:6881 and [::]:6881), uses uTP, encryption,
PEX and web seeds as shipped, and keeps seeding after completion until it is stopped.

It is driven over HTTP on a unix socket (the filesystem is shared by every namespace):
  POST /add     body {"url": "http://.../x.torrent"}: fetches the .torrent (libtorrent cannot
                fetch a .torrent URL itself) and adds it, saving into SAVE_DIR
  GET  /status  the libtorrent counters summed over the torrents added, as JSON
Its first stdout line is a JSON object once the socket listens. Run with Debian's /usr/bin/python3.

With LISTEN (ADDRESS:PORT, on a loopback Lan where hosts share one network namespace) it
listens there only and dials out from ADDRESS, so that peers tell the hosts apart.

usage: lt-host.py SOCKET_PATH SAVE_DIR [LISTEN]
"""
import http.server, json, os, signal, socket, socketserver, sys, threading, time, urllib.parse, urllib.request
import libtorrent as lt

socket_path, save_dir = sys.argv[1], sys.argv[2]
listen = sys.argv[3] if len(sys.argv) > 3 else None
settings = {
    'enable_dht': False, 'enable_lsd': False, 'enable_upnp': False, 'enable_natpmp': False,
    **({'listen_interfaces': listen, 'outgoing_interfaces': listen.rsplit(':', 1)[0]} if listen else {}),
    # Errors to stdout; finished blocks to count web seed bytes. A larger alert queue than the
    # default 2000, which fast downloads (one alert per 16 KiB) could overflow between two polls.
    'alert_mask': lt.alert.category_t.error_notification | lt.alert.category_t.block_progress_notification,
    'alert_queue_size': 100000,
}
session = lt.session(settings)
handles = []
lock = threading.Lock()

# Payload bytes from web seeds (BEP 19 url-list and BEP 17 http seeds). libtorrent has no
# per-torrent total for them, and a connection's own counter vanishes when it closes (a web seed
# closes as soon as the torrent completes), so every finished block is counted by the endpoint it
# came from; web seed endpoints are the addresses of the torrent's url-list, plus any connection
# get_peer_info() shows as a web seed.
BLOCK = 16 * 1024
bytes_by_endpoint = {}  # (infohash, endpoint) -> payload bytes of finished blocks
web_endpoints = set()  # (infohash, endpoint) of web seed connections
WEB_TYPES = (lt.peer_info.web_seed, lt.peer_info.http_seed)


def poll():
    """Classifies the open connections and counts the blocks finished since the last call; under `lock`."""
    for handle in handles:
        infohash = str(handle.info_hash())
        for peer in handle.get_peer_info():
            if peer.connection_type in WEB_TYPES:
                web_endpoints.add((infohash, tuple(peer.ip)))
    for alert in session.pop_alerts():
        if isinstance(alert, lt.block_finished_alert):
            count_block(alert)
        elif alert.category() & lt.alert.category_t.error_notification:
            print(json.dumps({'alert': alert.what(), 'message': alert.message()}), flush=True)


def web_seed_endpoints(info):
    """The addresses the torrent's web seeds resolve to, known before any of them connects."""
    endpoints = set()
    for seed in info.web_seeds():
        url = urllib.parse.urlsplit(seed['url'])
        port = url.port or (443 if url.scheme == 'https' else 80)
        try:
            for family, _, _, _, address in socket.getaddrinfo(url.hostname, port, proto=socket.IPPROTO_TCP):
                endpoints.add((address[0], port))
        except OSError:
            pass  # unresolvable: libtorrent will not reach it either
    return endpoints


def block_bytes(alert):
    info = alert.handle.torrent_file()
    if info is None:
        return BLOCK
    start = alert.block_index * BLOCK
    return max(0, min(BLOCK, info.piece_size(alert.piece_index) - start))


def count_block(alert):
    key = (str(alert.handle.info_hash()), tuple(alert.ip))
    bytes_by_endpoint[key] = bytes_by_endpoint.get(key, 0) + block_bytes(alert)


def status():
    with lock:
        poll()  # so that the blocks that completed the download are counted before "done" is reported
        states = [h.status() for h in handles]
        web = sum(n for key, n in bytes_by_endpoint.items() if key in web_endpoints)
    errors = [str(s.errc.message()) for s in states if s.errc.value()]
    return {
        'torrents': len(states),
        'done': bool(states) and all(s.is_seeding for s in states),
        'have': sum(s.total_wanted_done for s in states),
        'size': sum(s.total_wanted for s in states),
        'uploaded': sum(s.total_payload_upload for s in states),
        'downloaded': sum(s.total_payload_download for s in states),
        'webSeedDownloaded': web,
        'peers': sum(s.num_peers for s in states),
        'errors': errors,
    }


def add(url):
    with urllib.request.urlopen(url, timeout=30) as response:
        data = response.read()
    params = lt.add_torrent_params()
    params.ti = lt.torrent_info(lt.bdecode(data))
    params.save_path = save_dir
    handle = session.add_torrent(params)
    with lock:
        handles.append(handle)
        web_endpoints.update((str(handle.info_hash()), endpoint) for endpoint in web_seed_endpoints(params.ti))
    return {'infoHash': str(handle.info_hash()), 'name': params.ti.name()}


class Handler(http.server.BaseHTTPRequestHandler):
    def reply(self, code, body):
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header('content-type', 'application/json')
        self.send_header('content-length', str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path == '/status':
            self.reply(200, status())
        else:
            self.reply(404, {'error': f'no route {self.path}'})

    def do_POST(self):
        if self.path != '/add':
            return self.reply(404, {'error': f'no route {self.path}'})
        body = None
        try:
            body = json.loads(self.rfile.read(int(self.headers.get('content-length', '0'))))
            self.reply(200, add(body['url']))
        except Exception as err:  # the caller gets the reason, with the URL
            self.reply(500, {'error': f'adding {body.get("url") if isinstance(body, dict) else "?"}: {err!r}'})

    def address_string(self):
        return 'unix'  # a unix socket has no client address

    def log_message(self, format, *args):
        pass  # the caller logs what matters


class UnixServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


if os.path.exists(socket_path):
    os.unlink(socket_path)
server = UnixServer(socket_path, Handler)
threading.Thread(target=server.serve_forever, daemon=True).start()
print(json.dumps({'listening': socket_path, 'port': session.listen_port(), 'version': lt.__version__}), flush=True)

stopping = threading.Event()
signal.signal(signal.SIGTERM, lambda *_: stopping.set())
signal.signal(signal.SIGINT, lambda *_: stopping.set())
parent = os.getppid()
# Until stopped, or orphaned (whoever started us is gone and nobody can stop us any more).
while not stopping.is_set() and os.getppid() == parent:
    with lock:
        poll()
    time.sleep(0.1)
server.shutdown()
os.unlink(socket_path)
