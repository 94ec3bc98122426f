import { act, render, screen, waitFor } from '@testing-library/react'
import userEvent from '@testing-library/user-event'
import { beforeEach, describe, expect, it, vi } from 'vitest'
import { App } from './App'
import { TOKEN_STORAGE_KEY } from './lib/token'
import { FakeEventSource, makeStatus, routeFetch } from './test/fakes'

const CONFIG = { num_keys: 300, key_delay: 1, key_ttl: 100, dedup_window: 5000 }
const RUNNING = makeStatus({
  is_running: true,
  state: 'generating',
  test_id: 't-1',
  config: CONFIG,
  generated: 150,
  consumed: 120,
  in_flight: 30,
  progress: 40,
  generation_rate: 980,
  consumption_rate: 960,
  elapsed_s: 3,
  consumers: { 'consumer-0': 60, 'consumer-1': 60 },
  latency_ms: { p50: 3, p95: 12, p99: 40, count: 120 },
})
const FINISHED = makeStatus({
  ...RUNNING,
  is_running: false,
  state: 'finished',
  generated: 300,
  consumed: 300,
  in_flight: 0,
  progress: 100,
  elapsed_s: 4,
  verdict: { exactly_once: true, expected: 300, consumed: 300, missing: 0, duplicates: 0, dead_letters: 0 },
})

beforeEach(() => {
  FakeEventSource.instances = []
  vi.stubGlobal('EventSource', FakeEventSource)
})

async function renderApp() {
  const user = userEvent.setup()
  render(<App />)
  await waitFor(() => expect(screen.getByTestId('start')).toBeEnabled())
  return user
}

describe('start and stop', () => {
  it('sends the configured test as integers and reflects the running state', async () => {
    let current = makeStatus()
    const calls = routeFetch({
      'GET /api/status': () => ({ status: 200, body: current }),
      'GET /api/history': { status: 200, body: [] },
      'POST /api/start': () => {
        current = RUNNING
        return { status: 200, body: { status: 'started', test_id: 't-1', config: CONFIG } }
      },
    })
    const user = await renderApp()
    await user.clear(screen.getByTestId('input-num_keys'))
    await user.type(screen.getByTestId('input-num_keys'), '300')
    await user.click(screen.getByTestId('start'))

    await waitFor(() => expect(screen.getByTestId('status')).toHaveTextContent('Generating'))
    expect(calls.find((call) => call.method === 'POST')?.body).toEqual(CONFIG)
    expect(screen.getByTestId('start')).toBeDisabled()
    expect(screen.getByTestId('stop')).toBeEnabled()
    expect(screen.getByTestId('input-num_keys')).toBeDisabled()
    expect(screen.getByRole('progressbar')).toHaveAttribute('aria-valuenow', '40')
    expect(document.title).toBe('40.0 % · Expiry pipeline — test console')
  })

  it('picks up a test already running when the page opens', async () => {
    routeFetch({
      'GET /api/status': { status: 200, body: RUNNING },
      'GET /api/history': {
        status: 200,
        body: [
          { t: 1, generated: 90, consumed: 80, generation_rate: 900, consumption_rate: 800 },
          { t: 2, generated: 150, consumed: 120, generation_rate: 980, consumption_rate: 960 },
        ],
      },
    })
    render(<App />)
    await waitFor(() => expect(screen.getByTestId('stop')).toBeEnabled())
    expect(screen.getByTestId('start')).toBeDisabled()
    expect(screen.getByTestId('input-num_keys')).toHaveValue('300')
    // The history's points; a fetched status measured no interval of its own.
    await waitFor(() => expect(screen.getByTestId('rate-chart')).toHaveAttribute('data-samples', '2'))
    expect(screen.getByTestId('consumed')).toHaveTextContent('120')
    expect(screen.getByTestId('latency-p99')).toHaveTextContent('40 ms')
  })

  it('shows the verdict pushed at the end of the test', async () => {
    routeFetch({
      'GET /api/status': { status: 200, body: RUNNING },
      'GET /api/history': { status: 200, body: [] },
    })
    render(<App />)
    await waitFor(() => expect(screen.getByTestId('stop')).toBeEnabled())
    const verdict = screen.getByTestId('verdict')
    expect(verdict).toHaveAttribute('aria-live', 'polite')
    expect(verdict).toHaveAttribute('data-verdict', 'pending')
    act(() => FakeEventSource.latest().push(FINISHED))
    expect(verdict).toHaveAttribute('data-verdict', 'exactly-once')
    expect(verdict).toHaveTextContent('Every key was consumed exactly once')
    expect(screen.getByTestId('progress-text')).toHaveTextContent('100.0 %')
    expect(screen.getByTestId('start')).toBeEnabled()
    expect(screen.getByTestId('stop')).toBeDisabled()
  })
})

describe('Redis outages', () => {
  it('names the cause while Redis is away and clears the banner once it is back', async () => {
    routeFetch({
      'GET /api/status': { status: 200, body: RUNNING },
      'GET /api/history': { status: 200, body: [] },
    })
    render(<App />)
    await waitFor(() => expect(screen.getByTestId('stop')).toBeEnabled())
    expect(screen.queryByTestId('redis-problem')).toBeNull()
    const problem = {
      cause: 'out of memory',
      message: 'Redis is out of memory (maxmemory reached) and refuses writes: free memory',
      since: Date.now() / 1000 - 3,
    }
    act(() => FakeEventSource.latest().push({ ...RUNNING, elapsed_s: 4, redis_problem: problem }))
    const banner = screen.getByTestId('redis-problem')
    expect(banner).toHaveAttribute('role', 'alert')
    expect(banner).toHaveAttribute('data-cause', 'out of memory')
    expect(banner).toHaveTextContent('Redis is out of memory')
    expect(banner).toHaveTextContent('refuses writes')
    // The test still runs meanwhile.
    expect(screen.getByTestId('status')).toHaveTextContent('Generating')
    act(() => FakeEventSource.latest().push({ ...RUNNING, elapsed_s: 5 }))
    expect(screen.queryByTestId('redis-problem')).toBeNull()
  })

  it('shows why a test was interrupted when Redis lost it', async () => {
    const lost = makeStatus({
      state: 'interrupted',
      test_id: 't-1',
      config: CONFIG,
      elapsed_s: 3,
      reason: 'Redis restarted without its data (or was flushed) after 1,500 keys were written',
    })
    routeFetch({
      'GET /api/status': { status: 200, body: lost },
      'GET /api/history': { status: 200, body: [] },
    })
    render(<App />)
    await waitFor(() => expect(screen.getByTestId('status')).toHaveTextContent('Interrupted'))
    expect(screen.getByTestId('verdict')).toHaveAttribute('data-verdict', 'no-verdict')
    expect(screen.getByTestId('verdict')).toHaveTextContent('Redis restarted without its data')
    expect(screen.getByTestId('start')).toBeEnabled()
  })
})

/** The page open and streaming, its first status (the last test, finished) held back until
 * `arrive` lets it through: what a person does meanwhile meets it mid-edit. */
async function renderWithFirstStatusHeld() {
  let release: () => void = () => undefined
  const released = new Promise<void>((resolve) => {
    release = resolve
  })
  routeFetch({
    'GET /api/status': async () => {
      await released
      return { status: 200, body: FINISHED }
    },
    'GET /api/history': { status: 200, body: [] },
  })
  const user = userEvent.setup()
  render(<App />)
  act(() => {
    FakeEventSource.latest().open()
    FakeEventSource.latest().push(makeStatus())
  })
  await waitFor(() => expect(screen.getByTestId('start')).toBeEnabled())
  const arrive = async () => {
    await act(async () => {
      release()
      await released
    })
    await waitFor(() => expect(screen.getByTestId('verdict')).toBeInTheDocument())
  }
  return { user, arrive, release }
}

describe('validation', () => {
  it('keeps what the person typed when the first status arrives after the stream', async () => {
    const { user, arrive } = await renderWithFirstStatusHeld()
    const field = screen.getByTestId('input-num_keys')
    await user.clear(field)
    await user.type(field, '42')
    await arrive()
    expect(field).toHaveValue('42')
  })

  it('keeps a field selected for typing when the first status arrives before the keys', async () => {
    const { user, arrive } = await renderWithFirstStatusHeld()
    const field = screen.getByTestId('input-num_keys') as HTMLInputElement
    // What a browser's fill does: focus, select everything, then type over the selection.
    await user.click(field)
    field.setSelectionRange(0, field.value.length)
    await arrive()
    await user.keyboard('42')
    expect(field).toHaveValue('42')
  })

  it('shows the last test\'s parameters in the same update that shows the last test', async () => {
    // A field shown with the defaults and rewritten a moment later loses what a browser's
    // fill selected meanwhile, and the typed text is appended (seen: 50200000 keys).
    const { release } = await renderWithFirstStatusHeld()
    const field = screen.getByTestId('input-num_keys') as HTMLInputElement
    const seen: string[] = []
    const observer = new MutationObserver(() => {
      if (screen.queryByTestId('verdict')) seen.push(field.value)
    })
    observer.observe(document.body, { childList: true, subtree: true, characterData: true })
    // Outside act(): React commits and runs its effects in separate tasks, as in a browser,
    // and the observer sees the page between them.
    const previous = (globalThis as { IS_REACT_ACT_ENVIRONMENT?: boolean }).IS_REACT_ACT_ENVIRONMENT
    ;(globalThis as { IS_REACT_ACT_ENVIRONMENT?: boolean }).IS_REACT_ACT_ENVIRONMENT = false
    try {
      release()
      await waitFor(() => expect(seen.length).toBeGreaterThan(0))
      await waitFor(() => expect(field).toHaveValue(String(FINISHED.config?.num_keys)))
    } finally {
      ;(globalThis as { IS_REACT_ACT_ENVIRONMENT?: boolean }).IS_REACT_ACT_ENVIRONMENT = previous
      observer.disconnect()
    }
    expect(seen[0]).toBe(String(FINISHED.config?.num_keys))
  })

  it('keeps an invalid test on the page and names the field', async () => {
    const calls = routeFetch({
      'GET /api/status': { status: 200, body: makeStatus() },
      'GET /api/history': { status: 200, body: [] },
    })
    const user = await renderApp()
    const input = screen.getByTestId('input-num_keys')
    await user.clear(input)
    await user.type(input, '-5')
    await user.click(screen.getByTestId('start'))

    expect(screen.getByTestId('error-num_keys')).toHaveTextContent('Must be from 1 to 1,000,000 keys.')
    expect(input).toHaveAttribute('aria-invalid', 'true')
    expect(input).toHaveFocus()
    expect(calls.some((call) => call.method === 'POST')).toBe(false)

    await user.clear(input)
    await user.type(input, '10')
    expect(screen.queryByTestId('error-num_keys')).toBeNull()
  })

  it('shows a server 400 next to the field it names', async () => {
    routeFetch({
      'GET /api/status': { status: 200, body: makeStatus() },
      'GET /api/history': { status: 200, body: [] },
      'POST /api/start': { status: 400, body: { error: 'key_ttl must be at most 3600000', field: 'key_ttl' } },
    })
    const user = await renderApp()
    await user.click(screen.getByTestId('start'))
    expect(await screen.findByTestId('error-key_ttl')).toHaveTextContent('key_ttl must be at most 3600000')
    expect(screen.queryByTestId('form-error')).toBeNull()
  })

  it('shows a conflict as a form error', async () => {
    routeFetch({
      'GET /api/status': { status: 200, body: makeStatus() },
      'GET /api/history': { status: 200, body: [] },
      'POST /api/start': { status: 409, body: { error: 'a test is already running' } },
    })
    const user = await renderApp()
    await user.click(screen.getByTestId('start'))
    expect(await screen.findByTestId('form-error')).toHaveTextContent('a test is already running')
  })
})

describe('API token', () => {
  it('asks once on 401, retries with the bearer token and keeps it for the tab', async () => {
    let current = makeStatus()
    const calls = routeFetch({
      'GET /api/status': () => ({ status: 200, body: current }),
      'GET /api/history': { status: 200, body: [] },
      'POST /api/start': (call) => {
        if (call.authorization !== 'Bearer s3cret') return { status: 401, body: { error: 'missing or wrong API token' } }
        current = RUNNING
        return { status: 200, body: { status: 'started', test_id: 't-1', config: CONFIG } }
      },
      'POST /api/stop': (call) =>
        call.authorization === 'Bearer s3cret'
          ? { status: 200, body: { status: 'stopping', test_id: 't-1' } }
          : { status: 401, body: { error: 'missing or wrong API token' } },
    })
    const user = await renderApp()
    await user.click(screen.getByTestId('start'))

    const tokenInput = await screen.findByLabelText('API token')
    expect(tokenInput).toHaveFocus()
    await user.type(tokenInput, 's3cret{Enter}')

    await waitFor(() => expect(screen.getByTestId('stop')).toBeEnabled())
    expect(screen.queryByTestId('token-form')).toBeNull()
    expect(window.sessionStorage.getItem(TOKEN_STORAGE_KEY)).toBe('s3cret')

    await user.click(screen.getByTestId('stop'))
    await waitFor(() => expect(screen.getByTestId('stop')).toBeDisabled())
    const posts = calls.filter((call) => call.method === 'POST')
    expect(posts.map((call) => [call.path, call.authorization])).toEqual([
      ['/api/start', null],
      ['/api/start', 'Bearer s3cret'],
      ['/api/stop', 'Bearer s3cret'],
    ])
    expect(screen.queryByTestId('token-form')).toBeNull()
  })

  it('forgets a rejected token and asks again', async () => {
    window.sessionStorage.setItem(TOKEN_STORAGE_KEY, 'old')
    routeFetch({
      'GET /api/status': { status: 200, body: makeStatus() },
      'GET /api/history': { status: 200, body: [] },
      'POST /api/start': { status: 401, body: { error: 'missing or wrong API token' } },
    })
    const user = await renderApp()
    await user.click(screen.getByTestId('start'))
    expect(await screen.findByTestId('token-form')).toHaveTextContent('rejected')
    expect(window.sessionStorage.getItem(TOKEN_STORAGE_KEY)).toBeNull()
  })
})

describe('connection', () => {
  it('says when the generator is unreachable and reconnects by itself', async () => {
    vi.useFakeTimers({ shouldAdvanceTime: true })
    try {
      routeFetch({
        'GET /api/status': { status: 200, body: makeStatus() },
        'GET /api/history': { status: 200, body: [] },
      })
      render(<App />)
      const indicator = screen.getByTestId('connection')
      expect(indicator).toHaveAttribute('data-state', 'connecting')
      act(() => FakeEventSource.latest().open())
      expect(indicator).toHaveAttribute('data-state', 'open')

      const first = FakeEventSource.latest()
      act(() => first.fail())
      expect(indicator).toHaveAttribute('data-state', 'unreachable')
      expect(indicator).toHaveTextContent('unreachable')
      expect(first.readyState).toBe(FakeEventSource.CLOSED)

      await act(async () => {
        await vi.advanceTimersByTimeAsync(1_100)
      })
      const second = FakeEventSource.latest()
      expect(second).not.toBe(first)
      act(() => second.open())
      expect(indicator).toHaveAttribute('data-state', 'open')
    } finally {
      vi.useRealTimers()
    }
  })
})
