// Log lines for people and for machines. 'text' (the default): plain, greppable lines of time,
// level, message, then key=value context. 'json': one JSON object per line, {"time", "level",
// "msg", ...context}, for journald, Loki or jq. Either way, one call is one line and logging
// never throws.
export type LogLevel = 'debug' | 'info' | 'warn' | 'error'
export type LogFormat = 'text' | 'json'
export type LogContext = Record<string, unknown>
export type LogWriter = (line: string) => void

export interface Logger {
  debug(message: string, context?: LogContext): void
  info(message: string, context?: LogContext): void
  warn(message: string, context?: LogContext): void
  error(message: string, context?: LogContext): void
  child(context: LogContext): Logger
}

const ORDER: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 }

/** String(value), which throws for an object without a prototype: then a placeholder. */
function safeString(value: unknown): string {
  try {
    return String(value)
  } catch {
    return '[unprintable]'
  }
}

/** JSON, or what String() makes of a value JSON cannot write (a BigInt, a cycle): logging never throws. */
function toText(value: unknown): string | undefined {
  try {
    return JSON.stringify(value)
  } catch {
    return safeString(value)
  }
}

function formatValue(value: unknown): string {
  if (value instanceof Error) return JSON.stringify(value.message)
  const text = typeof value === 'string' ? value : toText(value)
  return /[\s"=]/.test(text ?? '') ? JSON.stringify(text) : String(text)
}

/**
 * A context value as JSON can hold it: an Error as its message, a BigInt as its decimal
 * string, a cycle as "[Circular]", a function or symbol as its String(), anywhere in the value.
 */
function jsonSafe(value: unknown, seen: Set<object> = new Set()): unknown {
  if (value instanceof Error) return value.message
  if (typeof value === 'bigint') return value.toString()
  if (typeof value === 'function' || typeof value === 'symbol') return safeString(value)
  if (value === null || typeof value !== 'object') return value
  if (seen.has(value)) return '[Circular]'
  // toJSON first (a Date, a URL, a Buffer): what JSON.stringify would write.
  const toJSON = (value as { toJSON?: unknown }).toJSON
  if (typeof toJSON === 'function') {
    try {
      return jsonSafe(toJSON.call(value), seen)
    } catch {
      return safeString(value)
    }
  }
  seen.add(value)
  try {
    if (Array.isArray(value)) return value.map((v) => jsonSafe(v, seen) ?? null)
    if (value instanceof Map) return jsonSafe(Object.fromEntries(value), seen)
    if (value instanceof Set) return jsonSafe([...value], seen)
    const out: Record<string, unknown> = {}
    for (const [k, v] of Object.entries(value)) out[k] = jsonSafe(v, seen)
    return out
  } catch {
    return safeString(value)
  } finally {
    seen.delete(value)
  }
}

function textLine(at: LogLevel, message: string, context: LogContext): string {
  const fields = Object.entries(context)
    .filter(([, v]) => v !== undefined)
    .map(([k, v]) => `${k}=${formatValue(v)}`)
  return [new Date().toISOString(), at.toUpperCase().padEnd(5), message, ...fields].join(' ')
}

function jsonLine(at: LogLevel, message: string, context: LogContext): string {
  // time, level and msg come first and cannot be overwritten by a context key of that name.
  const record = { ...(jsonSafe(context) as Record<string, unknown>), time: new Date().toISOString(), level: at, msg: message }
  const { time, level, msg, ...rest } = record
  try {
    return JSON.stringify({ time, level, msg, ...rest })
  } catch {
    return JSON.stringify({ time, level, msg })
  }
}

const stderrWriter: LogWriter = (line) => process.stderr.write(line + '\n')

/**
 * A logger writing lines at `level` and above in `format`, to stderr unless `write` is given.
 * (For callers of the earlier signature, a function as the second argument is the writer, in text.)
 */
export function createLogger(
  level: LogLevel = 'info',
  format: LogFormat | LogWriter = 'text',
  write: LogWriter = stderrWriter,
  bound: LogContext = {},
): Logger {
  if (typeof format === 'function') return createLogger(level, 'text', format, bound)
  const line = format === 'json' ? jsonLine : textLine
  const emit =
    (at: LogLevel) =>
    (message: string, context: LogContext = {}) => {
      if (ORDER[at] < ORDER[level]) return
      write(line(at, message, { ...bound, ...context }))
    }
  return {
    debug: emit('debug'),
    info: emit('info'),
    warn: emit('warn'),
    error: emit('error'),
    child: (context) => createLogger(level, format, write, { ...bound, ...context }),
  }
}

export const silentLogger: Logger = createLogger('error', 'text', () => {})
