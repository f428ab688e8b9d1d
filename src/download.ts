// A mirror's download: one torrent fetched from its swarm into a directory of the data tree's
// temp area, on the seeder's webtorrent client (seed.ts), so the copy is uploaded to the
// swarm while it arrives and goes on being seeded while it is verified.
import { createHash } from 'node:crypto'
import { createReadStream } from 'node:fs'
import type WebTorrent from 'webtorrent'
import type { Torrent } from 'webtorrent'
import type { Logger } from './log.ts'
import { refuseSelfConnections, removeTorrent } from './patches.ts'
import { SingleFileStore } from './file-store.ts'
import { decodeTorrent, parsedForClient } from './torrent.ts'

export interface DownloadOptions {
  timeoutMs: number
  /** Peers give nothing for this long: the torrent's web seeds are added. */
  webSeedAfterMs: number
  signal?: AbortSignal
}

/**
 * Downloads a torrent into `dir` from its swarm, uploading to it meanwhile, on `client`, which
 * goes on seeding from `dir` afterwards. The torrent's web seeds are a fallback, added only once
 * peers have given nothing for `webSeedAfterMs`: a copy that reads the origin's HTTP from the
 * start would take from the origin what the swarm is there to spare it. Rejects on timeout or
 * when `signal` aborts (the daemon is stopping); a download that fails is removed from `client`.
 */
export async function downloadTorrent(
  client: WebTorrent,
  torrentFile: Uint8Array,
  dir: string,
  options: DownloadOptions,
  log: Logger,
): Promise<void> {
  const { timeoutMs, webSeedAfterMs, signal } = options
  signal?.throwIfAborted()
  const { webSeeds } = decodeTorrent(torrentFile, dir)
  const parsed = await parsedForClient(torrentFile)
  const torrent = await new Promise<Torrent>((resolve, reject) => {
    const added = client.add(parsed, { path: dir, storeCacheSlots: 0, store: SingleFileStore }, resolve)
    added.once('error', reject)
    refuseSelfConnections(client, added)
  })
  let onAbort: (() => void) | undefined
  let timer: NodeJS.Timeout | undefined
  let stallCheck: NodeJS.Timeout | undefined
  let complete = false
  try {
    if (!torrent.done) {
      let downloadedBefore = 0
      stallCheck = setInterval(() => {
        if (torrent.downloaded > downloadedBefore) {
          downloadedBefore = torrent.downloaded
          return
        }
        clearInterval(stallCheck)
        if (webSeeds.length === 0) return
        log.info('no progress from peers, adding the web seeds', { name: torrent.name, peers: torrent.numPeers, webSeeds: webSeeds.length })
        for (const url of webSeeds) torrent.addWebSeed(url)
      }, webSeedAfterMs)
      await new Promise<void>((resolve, reject) => {
        timer = setTimeout(
          () => reject(new Error(`download of ${torrent.name} timed out after ${timeoutMs} ms (${Math.round(torrent.progress * 100)} %)`)),
          timeoutMs,
        )
        onAbort = () => reject(new Error(`download of ${torrent.name} cancelled: stopping`))
        signal?.addEventListener('abort', onAbort, { once: true })
        torrent.once('done', resolve)
        torrent.once('error', reject)
      })
    }
    complete = true
  } finally {
    clearTimeout(timer)
    clearInterval(stallCheck)
    if (onAbort) signal?.removeEventListener('abort', onAbort)
    if (!complete) await removeTorrent(client, torrent)
  }
}

/** A downloaded file's SHA-512, base64 as Sarracenia's identity and the sidecars carry it: what a copy is checked against. */
export async function sha512Of(path: string): Promise<string> {
  const hash = createHash('sha512')
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer)
  return hash.digest('base64')
}
