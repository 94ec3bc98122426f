import { useCallback, useEffect, useRef, useState } from 'react'
import { fetchHistory, fetchStatus } from '../lib/api'
import { appendStatus, EMPTY_SERIES, seedFromHistory, type RateSeries } from '../lib/history'
import { isStale } from '../lib/status'
import type { Status } from '../lib/types'
import { useStatusStream, type Connection } from './useStatusStream'

export type LoadState = 'loading' | 'loaded' | 'failed'

export interface Dashboard {
  status: Status | null
  series: RateSeries
  connection: Connection
  load: LoadState
  /** The status found when the page opened, once: lets the form show the last test's config. */
  firstStatus: Status | null
  refresh: () => Promise<void>
}

/** The test as the generator sees it: one fetch on load, then the pushed status events. */
export function useDashboard(): Dashboard {
  const [status, setStatus] = useState<Status | null>(null)
  const [series, setSeries] = useState<RateSeries>(EMPTY_SERIES)
  const [load, setLoad] = useState<LoadState>('loading')
  const [firstStatus, setFirstStatus] = useState<Status | null>(null)
  const statusRef = useRef<Status | null>(null)

  const apply = useCallback((incoming: Status) => {
    if (isStale(incoming, statusRef.current)) return
    statusRef.current = incoming
    setStatus(incoming)
    setSeries((previous) => appendStatus(previous, incoming))
  }, [])

  const refresh = useCallback(async () => {
    apply(await fetchStatus())
  }, [apply])

  // Status first, then its history: a page opened mid-test shows the whole chart so far.
  const catchUp = useCallback(async () => {
    const current = await fetchStatus()
    apply(current)
    const history = await fetchHistory()
    setSeries((previous) => seedFromHistory(previous, current.test_id, history))
    return current
  }, [apply])

  useEffect(() => {
    let cancelled = false
    catchUp().then(
      (current) => {
        if (cancelled) return
        setFirstStatus(current)
        setLoad('loaded')
      },
      () => {
        if (!cancelled) setLoad('failed')
      },
    )
    return () => {
      cancelled = true
    }
  }, [catchUp])

  const connection = useStatusStream('/api/events', {
    onStatus: (incoming) => {
      apply(incoming)
      setLoad((previous) => (previous === 'loaded' ? previous : 'loaded'))
    },
    onReconnect: () => {
      catchUp().catch(() => undefined)
    },
  })

  return { status, series, connection, load, firstStatus, refresh }
}
