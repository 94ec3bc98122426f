import { authHeaders } from './token'
import type { HistorySample, Status, TestConfig } from './types'

const REQUEST_TIMEOUT_MS = 10_000

export type ControlResult =
  | { kind: 'ok'; body: Record<string, unknown> }
  | { kind: 'unauthorized'; message: string }
  | { kind: 'error'; status: number; message: string; field?: string }

async function readJson(response: Response): Promise<Record<string, unknown>> {
  try {
    const body: unknown = await response.json()
    return body !== null && typeof body === 'object' ? (body as Record<string, unknown>) : {}
  } catch {
    return {}
  }
}

/** POSTs to /api/start or /api/stop; never throws, so callers handle every outcome in one place. */
async function control(path: string, body: unknown, token: string | null): Promise<ControlResult> {
  let response: Response
  try {
    response = await fetch(path, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', Accept: 'application/json', ...authHeaders(token) },
      body: JSON.stringify(body),
      signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
    })
  } catch {
    return {
      kind: 'error',
      status: 0,
      message: 'The generator did not answer. Check that it is running, then try again.',
    }
  }
  const json = await readJson(response)
  const message = typeof json.error === 'string' ? json.error : `HTTP ${response.status}`
  if (response.ok) return { kind: 'ok', body: json }
  if (response.status === 401) return { kind: 'unauthorized', message }
  const field = typeof json.field === 'string' ? json.field : undefined
  return { kind: 'error', status: response.status, message, field }
}

export function startTest(config: TestConfig, token: string | null): Promise<ControlResult> {
  return control('/api/start', config, token)
}

export function stopTest(token: string | null): Promise<ControlResult> {
  return control('/api/stop', {}, token)
}

async function getJson<T>(path: string): Promise<T> {
  const response = await fetch(path, {
    headers: { Accept: 'application/json' },
    signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
  })
  if (!response.ok) throw new Error(`${path} answered HTTP ${response.status}`)
  return (await response.json()) as T
}

export function fetchStatus(): Promise<Status> {
  return getJson<Status>('/api/status')
}

export async function fetchHistory(): Promise<HistorySample[]> {
  const samples = await getJson<unknown>('/api/history')
  return Array.isArray(samples) ? (samples as HistorySample[]) : []
}
