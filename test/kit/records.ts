// Published items for tests: every field of an ItemRecord filled, the ones a test is about
// given by the test.
import { noCounts } from '../../src/http.ts'
import { swarmSummary, type ItemStatus, type StatusReport } from '../../src/status.ts'
import type { ItemRecord } from '../../src/store.ts'

export const REL_PATH = '20261123T00Z/arpege/01/SP1/arpege__01__SP1__000H012H__2026-11-23T000000Z.grib2'

export function itemRecord(fields: Partial<ItemRecord> = {}): ItemRecord {
  const relPath = fields.relPath ?? REL_PATH
  return {
    version: 1,
    relPath,
    fileName: relPath.split('/').pop()!,
    sourceUrl: 'http://upstream.test/x',
    run: '2026-11-23T00:00:00Z',
    model: 'arpege',
    grid: '01',
    package: 'SP1',
    range: '000H012H',
    size: 4,
    mtimeMs: 0,
    md5: '0'.repeat(32),
    sha512: 'AA==',
    infoHash: 'ab'.repeat(20),
    pieceLength: 16384,
    magnetURI: 'magnet:?',
    publishedAt: '2026-11-23T03:00:00.000Z',
    expiresAt: '2026-11-23T15:00:00.000Z',
    ...fields,
  }
}

/** A status report of a node with nothing published: a test fills in what it is about. */
export function statusReport(fields: Partial<StatusReport> = {}): StatusReport {
  return {
    now: '2026-11-23T06:00:00.000Z',
    source: { enabled: true, model: 'arpege', grid: '01', packages: ['SP1'] },
    pass: { running: false },
    disk: { publishedBytes: 0, inFlightBytes: 0, budgetBytes: 40e9, freeBytes: 100e9 },
    retentionSeconds: 43200,
    seeder: { port: 51413, torrents: 0, rehashed: 0, uploaded: 0 },
    swarm: swarmSummary([]),
    uplink: { bytesPerSec: 0, webSeed: 'fallback' },
    http: noCounts(),
    items: [],
    ...fields,
  }
}

/** A published item as the status report shows it: nobody connected, nothing sent yet. */
export function itemStatus(fields: Partial<ItemStatus> = {}): ItemStatus {
  return {
    ...itemRecord(fields),
    ageSeconds: 60,
    expiresInSeconds: 43000,
    torrentUrl: 'http://x/t.torrent',
    httpUrl: 'http://x/d',
    seeders: 1,
    leechers: 0,
    completed: 0,
    peers: 0,
    uploaded: 0,
    uploadSpeed: 0,
    http: noCounts(),
    ...fields,
  }
}
