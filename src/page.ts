// The status page, rendered on the server from the status report so that it reads without
// JavaScript; status.js then refreshes it (by fetching this same page again, so the page has one
// renderer) and draws the charts. The template (public/index.html) marks where each part goes
// with a comment: <!--summary-->, <!--network-->, <!--items-->, <!--footer-->.
import { httpSentBytes, type ItemStatus, type StatusReport } from './status.ts'

const ESCAPES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }

/** Text made safe inside an element or a quoted attribute. */
export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => ESCAPES[c]!)
}

const UNITS = ['B', 'kB', 'MB', 'GB', 'TB']

/** Bytes in decimal units, as the charts show them. */
function formatBytes(n: number): string {
  let i = 0
  while (Math.abs(n) >= 1000 && i < UNITS.length - 1) {
    n /= 1000
    i++
  }
  return `${n.toFixed(i ? 1 : 0)} ${UNITS[i]}`
}

function formatDuration(seconds: number): string {
  const h = Math.floor(seconds / 3600)
  const m = Math.floor((seconds % 3600) / 60)
  const s = Math.round(seconds % 60)
  return h ? `${h} h ${m} min` : m ? `${m} min` : `${s} s`
}

/** An instant in UTC, ISO-like and 24 h: 2026-11-23 06:42:10Z ('' for an unparsable one). */
export function formatUtc(iso: string | undefined, seconds = true): string {
  const ms = iso === undefined ? NaN : Date.parse(iso)
  if (!Number.isFinite(ms)) return ''
  const text = new Date(ms).toISOString().replace('T', ' ')
  return `${text.slice(0, seconds ? 19 : 16)}Z`
}

/** The items in publication order, newest first (then by path, for a stable order). */
export function publicationOrder(items: ItemStatus[]): ItemStatus[] {
  return [...items].sort(
    (a, b) => Date.parse(b.publishedAt) - Date.parse(a.publishedAt) || (a.relPath < b.relPath ? -1 : a.relPath > b.relPath ? 1 : 0),
  )
}

/** What the origin sent of one file: BitTorrent, HTTP (plain, web seed, field subsets) and both. */
function sentByOrigin(item: ItemStatus): { bittorrent: number; http: number; total: number } {
  const http = httpSentBytes(item.http)
  return { bittorrent: item.uploaded, http, total: item.uploaded + http }
}

const COLUMNS = 11

const td = (text: string, className?: string, title?: string) =>
  `<td${className ? ` class="${className}"` : ''}${title ? ` title="${escapeHtml(title)}"` : ''}>${escapeHtml(text)}</td>`
const a = (href: string, text: string) => `<a href="${escapeHtml(href)}">${escapeHtml(text)}</a>`

function row(item: ItemStatus): string {
  const sent = sentByOrigin(item)
  const http = item.http
  const httpDetail = `plain ${formatBytes(http.dataBytes)}, web seed ${formatBytes(http.webSeedBytes)}, subsets ${formatBytes(http.subsetBytes)}`
  return (
    `<tr data-published="${escapeHtml(item.publishedAt)}">` +
    td(formatUtc(item.publishedAt), 'time') +
    td(formatUtc(item.run, false).replace(/:00Z$/, 'Z'), 'time opt') +
    td(`${item.package} ${item.range}`) +
    td(formatBytes(item.size), 'num') +
    td(formatDuration(item.expiresInSeconds), 'num opt', `expires ${formatUtc(item.expiresAt)}`) +
    td(`${item.seeders} / ${item.leechers}`, 'num opt') +
    td(String(item.completed), 'num opt') +
    td(formatBytes(sent.bittorrent), 'num') +
    td(formatBytes(sent.http), 'num', httpDetail) +
    td(formatBytes(sent.total), 'num total') +
    `<td>${a(item.torrentUrl, 'torrent')} · ${a(item.magnetURI, 'magnet')} · ${a(item.httpUrl, 'HTTP')}</td>` +
    '</tr>'
  )
}

function summary(status: StatusReport): string {
  const total = status.items.reduce((sum, item) => sum + item.size, 0)
  const { pass, swarm, disk } = status
  const lines: string[] = []
  lines.push(
    `${escapeHtml(`${status.source.model.toUpperCase()} ${status.source.grid} ${status.source.packages.join(' ')}`)}: ` +
      `<b>${status.items.length}</b> files published (${escapeHtml(formatBytes(total))}), kept ${escapeHtml(formatDuration(status.retentionSeconds))} each.`,
  )
  if (!status.source.enabled) lines.push('No fetching from upstream here: a mirror.')
  else if (pass.running) lines.push(`A pass is running (since ${escapeHtml(formatUtc(pass.lastStartedAt))}).`)
  else {
    const last = pass.lastFinishedAt ? `Last pass ${escapeHtml(formatUtc(pass.lastFinishedAt))}` : 'No pass yet'
    const report = pass.lastReport
    const counts = report ? `: ${report.published} published, ${report.failed.length} failed, ${report.deferred} deferred` : ''
    lines.push(`${last}${counts}${pass.nextPassAt ? `; next ${escapeHtml(formatUtc(pass.nextPassAt))}` : ''}.`)
  }
  const failed = pass.lastReport?.failed ?? []
  if (pass.lastError || failed.length) {
    const what = [
      ...(pass.lastError ? [`last error: ${pass.lastError}`] : []),
      ...failed.slice(0, 3).map((f) => `${f.relPath}: ${f.reason}`),
    ]
    lines.push(`<span class="warn">Failing — ${escapeHtml(what.join('; '))}${failed.length > 3 ? ' …' : ''}</span>`)
  }
  const offload = swarm.originBytes > 0 ? `: offload <b>${swarm.offloadRatio.toFixed(1)}×</b>` : ''
  lines.push(
    `Swarm: ${swarm.peers} peers connected, ${swarm.seeders} seeders and ${swarm.leechers} leechers on the tracker. ` +
      `Clients got ≈ ${escapeHtml(formatBytes(swarm.deliveredBytes))} of these files (${swarm.completed} completed BitTorrent downloads, plus plain HTTP) ` +
      `for ${escapeHtml(formatBytes(swarm.originBytes))} sent by the origin${offload}.`,
  )
  const used = disk.publishedBytes + disk.inFlightBytes
  const full = disk.budgetBytes > 0 && used > 0.9 * disk.budgetBytes
  lines.push(
    `<span${full ? ' class="warn"' : ''}>Disk: ${escapeHtml(formatBytes(used))} of a ${escapeHtml(formatBytes(disk.budgetBytes))} budget` +
      `${disk.budgetBytes > 0 ? ` (${Math.round((100 * used) / disk.budgetBytes)} %)` : ''}, ${escapeHtml(formatBytes(disk.freeBytes))} free.</span>`,
  )
  return lines.map((line) => `<span class="line">${line}</span>`).join(' ')
}

/** Notifications and mirroring: shown only on nodes that use them. */
function network(status: StatusReport): string {
  const parts: string[] = []
  const { notify, mirror } = status
  if (notify) {
    parts.push(
      `Notifications to ${notify.broker}: ${notify.connected ? 'connected' : 'broker unreachable'}, ` +
        `${notify.backlog} waiting on disk, ${notify.sent} sent` +
        (notify.dropped ? `, ${notify.dropped} dropped (backlog full)` : '') +
        (notify.lastError && !notify.connected ? ` (${notify.lastError})` : '') +
        '.',
    )
  }
  if (mirror) {
    parts.push(
      `Mirroring ${mirror.follows.join(', ')}: ` +
        (mirror.brokers ? `${mirror.following} of ${mirror.brokers} broker subscriptions live, ` : '') +
        `${mirror.copied} files copied, ${mirror.dropped} repeats dropped, ${mirror.failed} failed` +
        (mirror.refused ? `, ${mirror.refused} removes refused (not from where the copy came)` : '') +
        (mirror.conflicts ? `, ${mirror.conflicts} announcements of other content under a path held ignored` : '') +
        '.' +
        mirror.copying.map((c) => ` Copying ${c.relPath}: ${c.peers} peers, ${formatBytes(c.uploaded)} uploaded meanwhile.`).join(''),
    )
  }
  if (parts.length === 0) return ''
  const warn = notify && (!notify.connected || notify.dropped)
  return `<p id="network"${warn ? ' class="warn"' : ''}>${escapeHtml(parts.join(' '))}</p>`
}

function footer(status: StatusReport): string {
  const { http } = status
  const bittorrent = status.seeder.uploaded
  const httpTotal = httpSentBytes(http)
  return escapeHtml(
    (status.tracker ? `Tracker: ${status.tracker.announce.join(' ')}. ` : '') +
      `Seeder: port ${status.seeder.port}, ${status.seeder.torrents} torrents. ` +
      `Sent since start: ${formatBytes(bittorrent + httpTotal)} in all, ${formatBytes(bittorrent)} over BitTorrent, ${formatBytes(httpTotal)} over HTTP ` +
      `(${formatBytes(http.dataBytes)} in ${http.dataRequests} plain downloads, ${formatBytes(http.webSeedBytes)} in ${http.webSeedRequests} web-seed requests, ` +
      `${formatBytes(http.subsetBytes)} in ${http.subsetRequests} field subsets; ${http.webSeedDeclined} web-seed requests left to peers), ` +
      (status.uplink.bytesPerSec ? `within an uplink budget of ${formatBytes(status.uplink.bytesPerSec)}/s. ` : 'no uplink budget. ') +
      `Updated ${formatUtc(status.now)}.`,
  )
}

function items(status: StatusReport): string {
  if (status.items.length === 0) return `<tr><td colspan="${COLUMNS}">Nothing published yet.</td></tr>`
  return publicationOrder(status.items).map(row).join('\n')
}

/** The template with the summary, the table rows and the footer filled in from `status`. */
export function renderStatusPage(template: string, status: StatusReport): string {
  const parts: Record<string, () => string> = {
    summary: () => summary(status),
    network: () => network(status),
    items: () => items(status),
    footer: () => footer(status),
  }
  return template.replace(/<!--(summary|network|items|footer)-->/g, (_marker, name: string) => parts[name]!())
}
