// Public URLs of a published item, built from the configured public base URL. Data, .torrent
// and sidecar share one tree (/data/<relPath>...) so nginx can serve it with a single alias.
export function dataUrl(publicBaseUrl: string, relPath: string): string {
  return `${publicBaseUrl}/data/${relPath.split('/').map(encodeURIComponent).join('/')}`
}

export function torrentUrl(publicBaseUrl: string, relPath: string): string {
  return `${dataUrl(publicBaseUrl, relPath)}.torrent`
}

export function sidecarUrl(publicBaseUrl: string, relPath: string): string {
  return `${dataUrl(publicBaseUrl, relPath)}.json`
}
