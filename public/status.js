// Status page: the server renders it (it reads without JavaScript); this script refreshes its
// parts every 10 seconds by fetching the page again, and draws the last 24 h from /api/history
// with uPlot. Every time shown is UTC.
'use strict'

const units = ['B', 'kB', 'MB', 'GB', 'TB']
function bytes(n) {
  let i = 0
  while (Math.abs(n) >= 1000 && i < units.length - 1) { n /= 1000; i++ }
  return `${n.toFixed(i ? 1 : 0)} ${units[i]}`
}
function seconds(s) {
  return s >= 3600 ? `${+(s / 3600).toFixed(1)} h` : s >= 60 ? `${+(s / 60).toFixed(1)} min` : `${Math.round(s)} s`
}
function utc(t) {
  return new Date(t * 1000).toISOString().slice(0, 16).replace('T', ' ') + 'Z'
}
function link(href, text) {
  const a = document.createElement('a')
  a.href = href
  a.textContent = text
  return a
}

// The server's rendering of the parts that change, taken from a fresh copy of the page.
const PARTS = ['summary', 'network-slot', 'items', 'footer']
async function refresh() {
  try {
    const response = await fetch('/', { cache: 'no-store' })
    if (!response.ok) throw new Error(`HTTP ${response.status}`)
    const page = new DOMParser().parseFromString(await response.text(), 'text/html')
    for (const id of PARTS) {
      const fresh = page.getElementById(id)
      if (fresh) document.getElementById(id).replaceChildren(...fresh.childNodes)
    }
    document.getElementById('summary').classList.remove('warn')
  } catch (err) {
    const summary = document.getElementById('summary')
    summary.textContent = `Status unavailable: ${err.message}`
    summary.classList.add('warn')
  }
  await drawCharts().catch((err) => console.warn('history unavailable', err))
}

// The charts: one uPlot each, made at the first data and updated in place after.
const charts = (window.gribswarmCharts = {})
const utcDate = (t) => uPlot.tzDate(new Date(t * 1000), 'Etc/UTC')
// Axis labels in UTC, 24 h: HH:MM, with seconds when the ticks are less than a minute apart.
const timeAxis = {
  space: 70,
  incrs: [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400],
  values: (u, splits, axis, space, incr) => splits.map((t) => new Date(t * 1000).toISOString().slice(11, incr < 60 ? 19 : 16)),
}
const bytesAxis = { values: (u, splits) => splits.map(bytes), size: 70 }
const line = (label, stroke, value, extra) => ({ label, stroke, width: 1.5, value: (u, v) => (v == null ? '–' : value(v)), ...extra })

function chart(id, data, series, yAxis) {
  const el = document.getElementById(id)
  el.dataset.points = String(data[0].length)
  if (charts[id]) {
    charts[id].setData(data)
    return
  }
  if (data[0].length === 0) return
  const width = el.clientWidth
  charts[id] = new uPlot({
    width, height: Math.max(160, Math.min(240, Math.round(width * 0.45))),
    tzDate: utcDate,
    padding: [8, 36, 0, 0],
    scales: { x: { time: true } },
    series: [{ label: 'UTC', value: (u, t) => (t == null ? '–' : utc(t)) }, ...series],
    axes: [timeAxis, yAxis],
    legend: { live: true },
  }, data, el)
}

async function drawCharts() {
  const response = await fetch('/api/history', { cache: 'no-store' })
  if (!response.ok) throw new Error(`HTTP ${response.status}`)
  const { samples: s, latency } = await response.json()
  chart('chart-upload', [s.t, s.bittorrentBytes, s.httpBytes, s.deliveredBytes], [
    line('BitTorrent', '#0b5cad', bytes, { fill: 'rgba(11,92,173,.08)' }),
    line('HTTP', '#d9822b', bytes),
    line('delivered (est.)', '#2e7d32', bytes, { dash: [6, 4] }),
  ], bytesAxis)
  chart('chart-peers', [s.t, s.peers, s.seeders, s.leechers], [
    line('connected', '#0b5cad', String),
    line('seeders', '#2e7d32', String),
    line('leechers', '#d9822b', String),
  ], { size: 50, incrs: [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000] })
  // One point per file, in time order as uPlot wants it.
  const order = latency.t.map((t, i) => i).sort((a, b) => latency.t[a] - latency.t[b])
  chart('chart-latency', [order.map((i) => latency.t[i]), order.map((i) => latency.seconds[i])], [
    line('latency', '#6a1b9a', seconds, { paths: () => null, points: { show: true, size: 7, fill: '#6a1b9a' } }),
  ], { values: (u, splits) => splits.map(seconds), size: 64, incrs: [1, 5, 10, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400, 28800] })
  chart('chart-disk', [s.t, s.diskUsedBytes, s.diskBudgetBytes], [
    line('used', '#0b5cad', bytes, { fill: 'rgba(11,92,173,.08)' }),
    line('budget', '#b3261e', bytes, { dash: [6, 4] }),
  ], bytesAxis)
}

// The charts follow the page's width (a phone turned, a window resized).
let resizing
window.addEventListener('resize', () => {
  clearTimeout(resizing)
  resizing = setTimeout(() => {
    for (const [id, u] of Object.entries(charts)) {
      const width = document.getElementById(id).clientWidth
      if (width && width !== u.width) u.setSize({ width, height: Math.max(160, Math.min(240, Math.round(width * 0.45))) })
    }
  }, 150)
})

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

drawCharts().catch((err) => console.warn('history unavailable', err))
setInterval(refresh, 10000)
