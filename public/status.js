// Status page: renders /api/status and refreshes it every 10 seconds.
'use strict'

const units = ['B', 'kB', 'MB', 'GB', 'TB']
function bytes(n) {
  let i = 0
  while (n >= 1000 && i < units.length - 1) { n /= 1000; i++ }
  return `${n.toFixed(i ? 1 : 0)} ${units[i]}`
}
function duration(seconds) {
  const h = Math.floor(seconds / 3600), m = Math.floor((seconds % 3600) / 60), s = seconds % 60
  return h ? `${h} h ${m} min` : m ? `${m} min` : `${s} s`
}
function cell(text, className) {
  const td = document.createElement('td')
  td.textContent = text
  if (className) td.className = className
  return td
}
function link(href, text) {
  const a = document.createElement('a')
  a.href = href
  a.textContent = text
  return a
}

async function refresh() {
  let status
  try {
    const response = await fetch('/api/status', { cache: 'no-store' })
    status = await response.json()
  } catch (err) {
    document.getElementById('summary').textContent = `Status unavailable: ${err.message}`
    return
  }
  const total = status.items.reduce((sum, item) => sum + item.size, 0)
  const pass = status.pass
  document.getElementById('summary').textContent =
    `${status.source.model.toUpperCase()} ${status.source.grid} ${status.source.packages.join(' ')}: ` +
    `${status.items.length} files published (${bytes(total)}), kept ${duration(status.retentionSeconds)} each. ` +
    (!status.source.enabled ? 'No fetching from upstream here: a mirror.' :
      pass.running ? 'A pass is running.' : `Last pass ${pass.lastFinishedAt ? new Date(pass.lastFinishedAt).toLocaleString() : 'not yet'}` +
      (pass.nextPassAt ? `, next ${new Date(pass.nextPassAt).toLocaleTimeString()}.` : '.')) +
    (pass.lastError ? ` Last error: ${pass.lastError}` : '')

  // Notifications and mirroring: shown only on nodes that use them.
  const network = document.getElementById('network')
  const parts = []
  const notify = status.notify
  if (notify) {
    parts.push(`Notifications to ${notify.broker}: ${notify.connected ? 'connected' : 'broker unreachable'}, ` +
      `${notify.backlog} waiting on disk, ${notify.sent} sent` + (notify.dropped ? `, ${notify.dropped} dropped (backlog full)` : '') +
      (notify.lastError && !notify.connected ? ` (${notify.lastError})` : '') + '.')
  }
  const mirror = status.mirror
  if (mirror) {
    parts.push(`Mirroring ${mirror.follows.join(', ')}: ` +
      (mirror.brokers ? `${mirror.following} of ${mirror.brokers} broker subscriptions live, ` : '') +
      `${mirror.copied} files copied, ${mirror.dropped} repeats dropped, ${mirror.failed} failed` +
      (mirror.refused ? `, ${mirror.refused} removes refused (not from where the copy came)` : '') +
      (mirror.conflicts ? `, ${mirror.conflicts} announcements of other content under a path held ignored` : '') + '.' +
      mirror.copying.map((c) => ` Copying ${c.relPath}: ${c.peers} peers, ${bytes(c.uploaded)} uploaded meanwhile.`).join(''))
  }
  network.textContent = parts.join(' ')
  network.hidden = parts.length === 0
  network.className = notify && (!notify.connected || notify.dropped) ? 'warn' : ''

  const body = document.getElementById('items')
  body.replaceChildren()
  if (status.items.length === 0) {
    const tr = document.createElement('tr')
    const td = cell('Nothing published yet.')
    td.colSpan = 11
    tr.append(td)
    body.append(tr)
  }
  for (const item of status.items) {
    const tr = document.createElement('tr')
    const get = document.createElement('td')
    get.append(link(item.torrentUrl, 'torrent'), ' · ', link(item.magnetURI, 'magnet'), ' · ', link(item.httpUrl, 'HTTP'))
    tr.append(
      cell(item.run), cell(item.package), cell(item.range),
      cell(bytes(item.size), 'num'), cell(duration(item.ageSeconds), 'num'), cell(duration(item.expiresInSeconds), 'num'),
      cell(String(item.seeders), 'num'), cell(String(item.leechers), 'num'),
      cell(bytes(item.uploaded), 'num'), cell(bytes(item.http.dataBytes + item.http.webSeedBytes + item.http.subsetBytes), 'num'), get,
    )
    body.append(tr)
  }
  const disk = status.disk
  const http = status.http
  const bittorrent = status.items.reduce((sum, item) => sum + item.uploaded, 0)
  document.getElementById('footer').textContent =
    `Disk: ${bytes(disk.publishedBytes)} of a ${bytes(disk.budgetBytes)} budget, ${bytes(disk.freeBytes)} free. ` +
    (status.tracker ? `Tracker: ${status.tracker.announce.join(' ')}. ` : '') +
    `Seeder: port ${status.seeder.port}, ${status.seeder.torrents} torrents. ` +
    `Sent: ${bytes(bittorrent)} over BitTorrent (files listed), ${bytes(http.dataBytes + http.webSeedBytes + http.subsetBytes)} over HTTP since start ` +
    `(${bytes(http.dataBytes)} in ${http.dataRequests} plain downloads, ${bytes(http.webSeedBytes)} in ${http.webSeedRequests} web-seed requests, ` +
    `${bytes(http.subsetBytes)} in ${http.subsetRequests} field subsets; ` +
    `${http.webSeedDeclined} web-seed requests left to peers), ` +
    (status.uplink.bytesPerSec ? `within an uplink budget of ${bytes(status.uplink.bytesPerSec)}/s. ` : 'no uplink budget. ') +
    `Updated ${new Date(status.now).toLocaleTimeString()}.`
}

// The field search: the catalog's answer for the words typed, each file with its subset link.
function field(f) {
  return `${f.param}${f.name ? ` (${f.name})` : ''} at ${f.levelText}, ${f.ftime}`
}
async function search(event) {
  event.preventDefault()
  const q = document.getElementById('q').value
  const results = document.getElementById('results')
  results.hidden = false
  let catalog
  try {
    const response = await fetch(`/api/catalog?${new URLSearchParams({ q })}`)
    catalog = await response.json()
    if (!response.ok) throw new Error(catalog.error)
  } catch (err) {
    results.textContent = `Search failed: ${err.message}`
    return
  }
  results.replaceChildren()
  if (catalog.runs.length === 0) {
    const a = catalog.available
    results.textContent = `Nothing matches "${q}". Published: parameters ${a.param.join(', ')}; levels ${a.level.join(', ')}; steps ${a.step.join(', ')} h.`
    return
  }
  for (const run of catalog.runs) {
    for (const file of run.files) {
      const h3 = document.createElement('h3')
      h3.textContent = `Run ${run.run}, ${file.package} ${file.range}: ${file.fileName}`
      const ul = document.createElement('ul')
      for (const f of file.fields) {
        const li = document.createElement('li')
        li.textContent = field(f)
        ul.append(li)
      }
      const links = document.createElement('p')
      if (file.subset) links.append(link(file.subset.url, `subset (${bytes(file.subset.bytes)})`), ' · ')
      if (file.links.idx) links.append(link(file.links.idx, '.idx'), ' · ')
      links.append(link(file.links.torrent, `whole file: torrent (${bytes(file.size)})`), ' · ', link(file.links.magnet, 'magnet'), ' · ', link(file.links.http, 'HTTP'))
      results.append(h3, ul, links)
    }
  }
}
document.getElementById('search').addEventListener('submit', search)

refresh()
setInterval(refresh, 10000)
