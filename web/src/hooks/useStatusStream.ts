import { useEffect, useRef, useState } from 'react'
import type { Status } from '../lib/types'

export type Connection = 'connecting' | 'open' | 'unreachable'

// The generator sends a status event every second; this long without one means the
// stream is dead even if the socket looks open (a stalled proxy, a frozen process).
const SILENCE_LIMIT_MS = 5_000
const RETRY_MIN_MS = 1_000
const RETRY_MAX_MS = 10_000

export interface StreamHandlers {
  onStatus: (status: Status) => void
  /** Called when the stream opens again after a break, to catch up on what was missed. */
  onReconnect: () => void
}

/**
 * Follows /api/events. One EventSource at a time; when it fails it is closed and reopened
 * with a growing delay (1 s, 2 s, 4 s … 10 s), so an unreachable generator costs one
 * request every few seconds, never a storm.
 */
export function useStatusStream(url: string, handlers: StreamHandlers): Connection {
  const [connection, setConnection] = useState<Connection>('connecting')
  const handlersRef = useRef(handlers)
  handlersRef.current = handlers

  useEffect(() => {
    let source: EventSource | null = null
    let retryTimer: ReturnType<typeof setTimeout> | undefined
    let silenceTimer: ReturnType<typeof setTimeout> | undefined
    let retryDelay = RETRY_MIN_MS
    let hadBreak = false
    let stopped = false

    const armSilenceTimer = () => {
      clearTimeout(silenceTimer)
      silenceTimer = setTimeout(() => fail(), SILENCE_LIMIT_MS)
    }

    const fail = () => {
      if (stopped) return
      clearTimeout(silenceTimer)
      source?.close()
      source = null
      hadBreak = true
      setConnection('unreachable')
      clearTimeout(retryTimer)
      retryTimer = setTimeout(connect, retryDelay)
      retryDelay = Math.min(retryDelay * 2, RETRY_MAX_MS)
    }

    function connect() {
      if (stopped) return
      const current = new EventSource(url)
      source = current
      armSilenceTimer()
      current.onopen = () => {
        retryDelay = RETRY_MIN_MS
        setConnection('open')
        if (hadBreak) {
          hadBreak = false
          handlersRef.current.onReconnect()
        }
      }
      current.addEventListener('status', (event) => {
        armSilenceTimer()
        setConnection('open')
        let status: Status
        try {
          status = JSON.parse((event as MessageEvent<string>).data) as Status
        } catch {
          return
        }
        handlersRef.current.onStatus(status)
      })
      // The browser's own retry keeps no backoff and gives up on some errors; own it instead.
      current.onerror = () => {
        if (source === current) fail()
      }
    }

    connect()
    return () => {
      stopped = true
      clearTimeout(retryTimer)
      clearTimeout(silenceTimer)
      source?.close()
    }
  }, [url])

  return connection
}
