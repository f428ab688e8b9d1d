// Gathers announcements from the feeds of other gribswarm nodes (JSON Feed, RSS, Atom), polled
// every mirror.pollSeconds, and offers each to the copy queue (mirror.ts), which drops repeats.
import type { Got } from 'got'
import type { Logger } from './log.ts'
import type { Announcement } from './mirror.ts'
import type { Stage } from './stage.ts'

/** relPath from a published URL: <base>/data/<relPath>[.torrent|.json]. */
function relPathOf(url: string): string | undefined {
  const path = new URL(url).pathname
  const at = path.indexOf('/data/')
  if (at < 0) return undefined
  return path
    .slice(at + '/data/'.length)
    .replace(/\.(torrent|json)$/, '')
    .split('/')
    .map(decodeURIComponent)
    .join('/')
}

/** A gribswarm node's file, from its sidecar URL: <base>/data/<relPath>.json. */
function published(relPath: string, sidecarUrl: string, origin: string): Announcement {
  const url = sidecarUrl.replace(/\.json$/, '')
  return { relPath, origin, baseUrl: url.slice(0, url.indexOf('/data/') + '/data'.length), url, sidecarUrl }
}

/** Announcements in a gribswarm feed: JSON Feed (its _gribswarm extension) or RSS/Atom (torrent enclosures). */
export function parseFeed(text: string, feedUrl: string): Announcement[] {
  const found: Announcement[] = []
  if (text.trimStart().startsWith('{')) {
    const feed = JSON.parse(text) as { items?: Array<{ _gribswarm?: { relPath?: string; sidecar?: string; sha512?: string } }> }
    for (const item of feed.items ?? []) {
      const ext = item._gribswarm
      if (ext?.relPath && ext.sidecar) {
        const identity = ext.sha512 ? { method: 'sha512' as const, value: ext.sha512 } : undefined
        found.push({ ...published(ext.relPath, new URL(ext.sidecar, feedUrl).toString(), feedUrl), identity })
      }
    }
    return found
  }
  for (const [, url] of text.matchAll(/<(?:enclosure url|link rel="enclosure" href)="([^"]+\.torrent)"/g)) {
    const torrentUrl = new URL(url!.replaceAll('&amp;', '&'), feedUrl).toString()
    const relPath = relPathOf(torrentUrl)
    if (relPath) found.push(published(relPath, torrentUrl.replace(/\.torrent$/, '.json'), feedUrl))
  }
  return found
}

export interface FeedFollowerStatus {
  feed: string
  polls: number
  lastError?: string
}

export class FeedFollower implements Stage<FeedFollowerStatus> {
  private timer: NodeJS.Timeout | undefined
  private readonly stopping = new AbortController()
  private polling: Promise<void> | undefined
  private readonly state: FeedFollowerStatus

  constructor(
    private readonly feedUrl: string,
    private readonly deps: { pollSeconds: number; http: Got; offer: (a: Announcement) => Promise<void>; log: Logger },
  ) {
    this.state = { feed: feedUrl, polls: 0 }
  }

  async start(): Promise<void> {
    void this.poll()
    this.timer = setInterval(() => void this.poll(), this.deps.pollSeconds * 1000)
  }

  async stop(): Promise<void> {
    this.stopping.abort()
    clearInterval(this.timer)
    await this.polling
  }

  status(): FeedFollowerStatus {
    return { ...this.state }
  }

  /** Reads the feed once and offers what it lists (a poll still running is joined, not doubled). */
  poll(): Promise<void> {
    this.polling ??= this.pollOnce().finally(() => (this.polling = undefined))
    return this.polling
  }

  private async pollOnce(): Promise<void> {
    try {
      const text = await this.deps.http.get(this.feedUrl, { timeout: { request: 30_000 }, signal: this.stopping.signal }).text()
      this.state.polls++
      this.state.lastError = undefined
      for (const announcement of parseFeed(text, this.feedUrl)) void this.deps.offer(announcement)
    } catch (err) {
      if (this.stopping.signal.aborted) return
      this.state.lastError = (err as Error).message
      this.deps.log.warn('could not read the feed of a node we follow', { feed: this.feedUrl, error: err })
    }
  }
}
