// Browser APIs the page needs that jsdom lacks, for component tests. The generator itself is
// exercised for real by the Playwright tests in tests/web/.
import { vi } from 'vitest'
import type { Status } from '../lib/types'

export class FakeEventSource {
  static instances: FakeEventSource[] = []
  static readonly CONNECTING = 0
  static readonly OPEN = 1
  static readonly CLOSED = 2
  readyState = FakeEventSource.CONNECTING
  onopen: (() => void) | null = null
  onerror: (() => void) | null = null
  private listeners = new Map<string, ((event: MessageEvent<string>) => void)[]>()

  constructor(public url: string) {
    FakeEventSource.instances.push(this)
  }

  addEventListener(name: string, listener: (event: MessageEvent<string>) => void) {
    this.listeners.set(name, [...(this.listeners.get(name) ?? []), listener])
  }

  close() {
    this.readyState = FakeEventSource.CLOSED
  }

  open() {
    this.readyState = FakeEventSource.OPEN
    this.onopen?.()
  }

  push(status: Status) {
    const event = new MessageEvent('status', { data: JSON.stringify(status) })
    for (const listener of this.listeners.get('status') ?? []) listener(event)
  }

  fail() {
    this.onerror?.()
  }

  static latest(): FakeEventSource {
    const latest = FakeEventSource.instances.at(-1)
    if (!latest) throw new Error('no EventSource opened')
    return latest
  }
}

export function makeStatus(overrides: Partial<Status> = {}): Status {
  return {
    is_running: false,
    state: 'idle',
    test_id: null,
    config: null,
    generated: 0,
    consumed: 0,
    in_flight: 0,
    progress: 0,
    generation_rate: 0,
    consumption_rate: 0,
    elapsed_s: 0,
    started_at: null,
    finished_at: null,
    consumers: {},
    listeners: [],
    latency_ms: null,
    pending: 0,
    claimed_in_flight: 0,
    recovered: 0,
    redelivered: 0,
    dead_letters: 0,
    recent_dead_letters: [],
    verdict: null,
    reason: null,
    auth_required: false,
    redis_problem: null,
    rate_sample: null,
    ...overrides,
  }
}

export interface Call {
  method: string
  path: string
  body: unknown
  authorization: string | null
}

type Reply = { status: number; body: unknown }
type Handler = (call: Call) => Reply | Promise<Reply>

/** Routes fetch() by "METHOD /path" to canned replies and records every call. */
export function routeFetch(routes: Record<string, Handler | Reply>) {
  const calls: Call[] = []
  const fetchMock = vi.fn(async (input: RequestInfo | URL, init?: RequestInit) => {
    const path = typeof input === 'string' ? input : input instanceof URL ? input.pathname : input.url
    const method = init?.method ?? 'GET'
    const headers = new Headers(init?.headers)
    const call: Call = {
      method,
      path,
      body: init?.body ? JSON.parse(String(init.body)) : undefined,
      authorization: headers.get('Authorization'),
    }
    calls.push(call)
    const route = routes[`${method} ${path}`]
    if (!route) return new Response(JSON.stringify({ error: 'not found' }), { status: 404 })
    const reply = typeof route === 'function' ? await route(call) : route
    return new Response(JSON.stringify(reply.body), {
      status: reply.status,
      headers: { 'Content-Type': 'application/json' },
    })
  })
  vi.stubGlobal('fetch', fetchMock)
  return calls
}
