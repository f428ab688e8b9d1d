// Public URLs of a published item, built from the configured public base URL. Data, .torrent
// and sidecar share one tree (/data/<relPath>...); the web seed has a path of its own
// (/webseed/<relPath>), so that the daemon can tell a BitTorrent client's request from a plain download.
export function encodeRelPath(relPath: string): string {
  return relPath.split('/').map(encodeURIComponent).join('/')
}

export function dataUrl(publicBaseUrl: string, relPath: string): string {
  return `${publicBaseUrl}/data/${encodeRelPath(relPath)}`
}

/** The torrent's web seed (BEP 19 url-list): the same file, served only when peers cannot serve it. */
export function webSeedUrl(publicBaseUrl: string, relPath: string): string {
  return `${publicBaseUrl}/webseed/${encodeRelPath(relPath)}`
}

export function torrentUrl(publicBaseUrl: string, relPath: string): string {
  return `${dataUrl(publicBaseUrl, relPath)}.torrent`
}

export function sidecarUrl(publicBaseUrl: string, relPath: string): string {
  return `${dataUrl(publicBaseUrl, relPath)}.json`
}

/** A GRIB2 file's inventory, in wgrib2's format. */
export function idxUrl(publicBaseUrl: string, relPath: string): string {
  return `${dataUrl(publicBaseUrl, relPath)}.idx`
}
