#!/usr/bin/python3
"""N libtorrent clients (one session each), one per torrent, start together on N torrents that
one seeder holds, each given that seeder's address directly, and download until all are done.
Prints one JSON line: per client, when the first payload byte arrived (to within a second:
libtorrent updates its counters once a second), when the download was complete, and the bytes. Run with Debian's /usr/bin/python3.

Each client takes its torrent as published (trackers and web seed included) and is given the
seeder's address at once; uTP is off (TCP only). One client per torrent: no other peer has it.
Each client has its own loopback address (127.0.0.2, 127.0.0.3, ...: Linux routes all of
127.0.0.0/8 to lo), as N machines would: transmission-daemon drops an incoming connection while
a handshake from the same address is in progress, and libtorrent then waits a minute before
trying that peer again.

usage: lt-clients.py SEEDER_HOST:PORT SAVE_ROOT TIMEOUT_SECONDS TORRENT...
"""
import json, os, sys, time
import libtorrent as lt
from lt_clients_common import client_session

peer, save_root, timeout, torrents = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4:]
if not 1 <= len(torrents) <= 250:
    sys.exit('lt-clients.py: 1 to 250 torrents (one client and loopback address each)')
host, port = peer.rsplit(':', 1)
clients = []
for index, torrent in enumerate(torrents):
    session = client_session(index, utp=False)
    params = lt.add_torrent_params()
    params.ti = lt.torrent_info(torrent)
    params.save_path = os.path.join(save_root, str(index))
    # Added paused, resumed together below: no client gets a head start while the others are set up.
    params.flags = (params.flags | lt.torrent_flags.paused) & ~lt.torrent_flags.auto_managed
    os.makedirs(params.save_path, exist_ok=True)
    handle = session.add_torrent(params)
    clients.append({'session': session, 'handle': handle, 'first_byte': None, 'seconds': None})

start = time.time()
for client in clients:
    client['handle'].resume()
    client['handle'].connect_peer((host, int(port)))
while time.time() - start < timeout:
    for client in clients:
        if client['seconds'] is None:
            status = client['handle'].status()
            if client['first_byte'] is None and (status.total_payload_download > 0 or status.is_seeding):
                client['first_byte'] = time.time() - start
            if status.is_seeding:
                client['seconds'] = time.time() - start
    if all(client['seconds'] is not None for client in clients):
        break
    time.sleep(0.05)
result = []
for client in clients:
    status = client['handle'].status()
    result.append({'first_byte_seconds': client['first_byte'], 'seconds': client['seconds'], 'bytes': status.total_wanted_done, 'name': status.name,
                   'error': str(status.errc.message()) if status.errc.value() else None})
done = all(client['seconds'] is not None for client in result)
print(json.dumps({'done': done, 'clients': result}), flush=True)
# Tearing the sessions down measures nothing.
os._exit(0 if done else 1)
