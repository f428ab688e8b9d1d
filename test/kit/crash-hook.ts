// Loaded with `--import` into a daemon child by crash.test.ts, never by gribswarm itself: the
// step named in CRASH_HOOK_AT hangs forever once reached, after writing a marker
// file, so that the test can SIGKILL the process at exactly that point of the pipeline.
import { writeFileSync } from 'node:fs'
import fsp from 'node:fs/promises'
import { syncBuiltinESMExports } from 'node:module'
import gdal from 'gdal-async'

export interface CrashPoint {
  /** 'rename-before'/'rename-after': a rename whose destination matches `match`; 'gdal-open': the `nth` GDAL open of a downloaded file */
  step: 'rename-before' | 'rename-after' | 'gdal-open'
  match?: string
  nth?: number
  marker: string
}

const point = JSON.parse(process.env.CRASH_HOOK_AT ?? 'null') as CrashPoint | null

function hang(where: string): Promise<never> {
  writeFileSync(point!.marker, where)
  return new Promise<never>(() => {})
}

if (point?.step === 'gdal-open') {
  const open = gdal.openAsync.bind(gdal)
  let calls = 0
  // Opens of files in memory (/vsimem/: the start-up check that GDAL decodes CCSDS) are not counted.
  gdal.openAsync = ((...args: Parameters<typeof gdal.openAsync>) =>
    !String(args[0]).startsWith('/vsimem/') && ++calls >= point.nth! ? hang(String(args[0])) : open(...args)) as typeof gdal.openAsync
} else if (point) {
  const rename = fsp.rename
  const pattern = new RegExp(point.match!)
  fsp.rename = async (from, to) => {
    const hit = pattern.test(String(to))
    if (hit && point.step === 'rename-before') return hang(String(to))
    await rename(from, to)
    if (hit) return hang(String(to))
  }
  // src/ imports `rename` from node:fs/promises by name: update the ESM bindings too.
  syncBuiltinESMExports()
}
