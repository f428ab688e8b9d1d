"""Shared by the libtorrent client scripts (lt-swarm.py, lt-clients.py, lt-soak.py): one
session per simulated user, each on its own loopback address as separate machines would be
(qBittorrent accepts one connection per address by default, transmission keys peers by it),
announcing to trackers only: no DHT, LSD, UPnP or NAT-PMP."""
import libtorrent as lt

MAX_CLIENTS = 250  # 127.0.0.2 to 127.0.0.251


def client_session(index, utp=True):
    if index >= MAX_CLIENTS:
        raise SystemExit(f'at most {MAX_CLIENTS} clients (one loopback address each)')
    address = f'127.0.0.{index + 2}'
    return lt.session({
        'listen_interfaces': f'{address}:0', 'outgoing_interfaces': address,
        'enable_dht': False, 'enable_lsd': False, 'enable_upnp': False, 'enable_natpmp': False,
        'allow_multiple_connections_per_ip': True,
        'enable_outgoing_utp': utp, 'enable_incoming_utp': utp,
        'alert_mask': lt.alert.category_t.error_notification,
    })
