#!/usr/bin/python3
"""N libtorrent clients that download continuously from a gribswarm feed until a deadline, as
users whose clients follow the feed would: each client takes a random item of /feed.json,
downloads it from its .torrent as published (web seed included), checks its size, deletes
it and takes another. A download whose item expired meanwhile is abandoned after a while.
Prints one JSON line: downloads completed, abandoned, bytes, errors. Run with /usr/bin/python3.

usage: lt-soak.py FEED_URL SAVE_ROOT CLIENTS SECONDS
"""
import json, os, random, shutil, sys, time, urllib.error, urllib.request
import libtorrent as lt
from lt_clients_common import client_session

feed_url, save_root, count, seconds = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
GIVE_UP_SECONDS = 60
deadline = time.time() + seconds
result = {'completed': 0, 'abandoned': 0, 'gone': 0, 'bytes': 0, 'errors': []}


def get(url):
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read()


clients = []
for index in range(count):
    clients.append({'session': client_session(index), 'handle': None, 'started': 0.0, 'size': 0, 'dir': os.path.join(save_root, str(index))})


def finish(client, outcome):
    client['session'].remove_torrent(client['handle'])
    shutil.rmtree(client['dir'], ignore_errors=True)
    client['handle'] = None
    result[outcome] += 1


items, listed_at = [], 0.0
while time.time() < deadline:
    if time.time() - listed_at > 2:
        try:
            items = json.loads(get(feed_url))['items']
        except Exception as err:  # the daemon is under test: note it, keep going
            result['errors'].append(f'feed: {err}')
        listed_at = time.time()
    for client in clients:
        handle = client['handle']
        if handle is not None:
            status = handle.status()
            if status.is_seeding:
                path = os.path.join(client['dir'], handle.torrent_file().files().file_path(0))
                if os.path.getsize(path) != client['size']:
                    result['errors'].append(f'{path}: size {os.path.getsize(path)}, expected {client["size"]}')
                result['bytes'] += client['size']
                finish(client, 'completed')
            elif time.time() - client['started'] > GIVE_UP_SECONDS:
                finish(client, 'abandoned')
        elif items:
            item = random.choice(items)
            try:
                info = lt.torrent_info(lt.bdecode(get(item['attachments'][0]['url'])))
            except urllib.error.HTTPError as err:
                if err.code != 404:
                    result['errors'].append(f'torrent {item["id"]}: {err}')
                result['gone'] += err.code == 404  # expired between the listing and now
                continue
            params = lt.add_torrent_params()
            params.ti = info
            params.save_path = client['dir']
            os.makedirs(client['dir'], exist_ok=True)
            client.update(handle=client['session'].add_torrent(params), started=time.time(), size=item['_gribswarm']['size'])
    time.sleep(0.1)

result['errors'] = result['errors'][-20:]
print(json.dumps(result), flush=True)
os._exit(0)  # libtorrent's session destructors can hang at exit
