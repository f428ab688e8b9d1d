#!/usr/bin/python3
"""N libtorrent clients (one session each, as N people running qBittorrent would) start
together on one torrent, find each other and the seeders through the torrent's trackers, and
keep seeding to each other until all are done, as real clients do. Prints one JSON line:
per-client completion seconds, bytes downloaded and uploaded. Run with Debian's /usr/bin/python3.

Each client has its own loopback address (127.0.0.2, 127.0.0.3, ...: Linux routes all of
127.0.0.0/8 to lo) for listening, outgoing connections and tracker announces, as N machines
would: seeders that accept one connection per IP address (qBittorrent's default) or key their
peers by address (transmission) would otherwise see a single peer.

usage: lt-swarm.py TORRENT SAVE_ROOT CLIENTS TIMEOUT_SECONDS [--no-utp] [--no-webseed]
"""
import json, os, sys, time
import libtorrent as lt
from lt_clients_common import client_session

torrent, save_root, count, timeout = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
flags = sys.argv[5:]
info = lt.torrent_info(torrent)
if '--no-webseed' in flags:
    info.set_web_seeds([])
clients = []
for index in range(count):
    session = client_session(index, utp='--no-utp' not in flags)
    params = lt.add_torrent_params()
    params.ti = lt.torrent_info(info)
    params.save_path = os.path.join(save_root, str(index))
    # Added paused, resumed together below: no client gets a head start while the others are set up.
    params.flags = (params.flags | lt.torrent_flags.paused) & ~lt.torrent_flags.auto_managed
    os.makedirs(params.save_path, exist_ok=True)
    clients.append({'session': session, 'handle': session.add_torrent(params), 'seconds': None})

start = time.time()
for client in clients:
    client['handle'].resume()
while time.time() - start < timeout:
    for client in clients:
        if client['seconds'] is None and client['handle'].status().is_seeding:
            client['seconds'] = time.time() - start
    if all(client['seconds'] is not None for client in clients):
        break
    time.sleep(0.05)
# libtorrent updates its byte counters once a second: one more tick, so that the totals below
# include the last pieces (nobody transfers any more once all are done).
time.sleep(1.2)
result = []
for client in clients:
    status = client['handle'].status()
    result.append({'seconds': client['seconds'], 'progress': round(status.progress, 4), 'peers': status.num_peers,
                   'downloaded': status.all_time_download, 'uploaded': status.all_time_upload,
                   'error': str(status.errc.message()) if status.errc.value() else None})
done = all(client['seconds'] is not None for client in result)
print(json.dumps({'done': done, 'clients': result}), flush=True)
# Tearing 16 sessions down (tracker "stopped" announces, uTP sockets draining) takes minutes
# and measures nothing.
os._exit(0 if done else 1)
