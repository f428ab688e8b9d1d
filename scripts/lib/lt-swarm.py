#!/usr/bin/python3
"""N libtorrent clients (one session each, as N people running qBittorrent would) start
together on one torrent, find each other and the seeders through the torrent's trackers, and
keep seeding to each other until all are done, as real clients do. Prints one JSON line:
per-client completion seconds, bytes downloaded and uploaded. Run with Debian's /usr/bin/python3.

usage: lt-swarm.py TORRENT SAVE_ROOT CLIENTS TIMEOUT_SECONDS [--no-utp] [--no-webseed]
"""
import json, os, sys, time
import libtorrent as lt

torrent, save_root, count, timeout = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
flags = sys.argv[5:]
info = lt.torrent_info(torrent)
if '--no-webseed' in flags:
    info.set_web_seeds([])
clients = []
for index in range(count):
    session = lt.session({
        'listen_interfaces': '127.0.0.1:0',
        'enable_dht': False, 'enable_lsd': False, 'enable_upnp': False, 'enable_natpmp': False,
        # Every peer is 127.0.0.1 here, on its own port.
        'allow_multiple_connections_per_ip': True,
        'enable_outgoing_utp': '--no-utp' not in flags, 'enable_incoming_utp': '--no-utp' not in flags,
        'alert_mask': lt.alert.category_t.error_notification,
    })
    params = lt.add_torrent_params()
    params.ti = lt.torrent_info(info)
    params.save_path = os.path.join(save_root, str(index))
    os.makedirs(params.save_path, exist_ok=True)
    clients.append({'session': session, 'handle': session.add_torrent(params), 'seconds': None})

start = time.time()
while time.time() - start < timeout:
    for client in clients:
        if client['seconds'] is None and client['handle'].status().is_seeding:
            client['seconds'] = time.time() - start
    if all(client['seconds'] is not None for client in clients):
        break
    time.sleep(0.05)
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
