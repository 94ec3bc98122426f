import type { Connection } from '../hooks/useStatusStream'

const LOOK: Record<Connection, { dot: string; text: string; label: string }> = {
  open: { dot: 'bg-emerald-500', text: 'text-emerald-800', label: 'Live' },
  connecting: { dot: 'bg-amber-400', text: 'text-amber-800', label: 'Connecting…' },
  unreachable: {
    dot: 'bg-red-500',
    text: 'text-red-800',
    label: 'Generator unreachable — reconnecting…',
  },
}

export function ConnectionIndicator({ connection }: { connection: Connection }) {
  const look = LOOK[connection]
  return (
    <p
      data-testid="connection"
      data-state={connection}
      role="status"
      aria-live="polite"
      className={`inline-flex items-center gap-2 rounded-full border border-slate-200 bg-white px-3 py-1 text-sm font-medium ${look.text}`}
    >
      <span aria-hidden="true" className={`size-2.5 rounded-full ${look.dot} ${connection === 'open' ? 'animate-pulse' : ''}`} />
      {look.label}
    </p>
  )
}
