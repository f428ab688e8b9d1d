// Plain, greppable log lines: time, level, message, then key=value context.
export type LogLevel = 'debug' | 'info' | 'warn' | 'error'
export type LogContext = Record<string, unknown>

export interface Logger {
  debug(message: string, context?: LogContext): void
  info(message: string, context?: LogContext): void
  warn(message: string, context?: LogContext): void
  error(message: string, context?: LogContext): void
  child(context: LogContext): Logger
}

const ORDER: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 }

/** JSON, or what String() makes of a value JSON cannot write (a BigInt, a cycle): logging never throws. */
function toText(value: unknown): string | undefined {
  try {
    return JSON.stringify(value)
  } catch {
    return String(value)
  }
}

function formatValue(value: unknown): string {
  if (value instanceof Error) return JSON.stringify(value.message)
  const text = typeof value === 'string' ? value : toText(value)
  return /[\s"=]/.test(text ?? '') ? JSON.stringify(text) : String(text)
}

export function createLogger(
  level: LogLevel = 'info',
  write: (line: string) => void = (line) => process.stderr.write(line + '\n'),
  bound: LogContext = {},
): Logger {
  const emit =
    (at: LogLevel) =>
    (message: string, context: LogContext = {}) => {
      if (ORDER[at] < ORDER[level]) return
      const fields = Object.entries({ ...bound, ...context })
        .filter(([, v]) => v !== undefined)
        .map(([k, v]) => `${k}=${formatValue(v)}`)
      write([new Date().toISOString(), at.toUpperCase().padEnd(5), message, ...fields].join(' '))
    }
  return {
    debug: emit('debug'),
    info: emit('info'),
    warn: emit('warn'),
    error: emit('error'),
    child: (context) => createLogger(level, write, { ...bound, ...context }),
  }
}

export const silentLogger: Logger = createLogger('error', () => {})
