import { render, screen } from '@testing-library/react'
import { describe, expect, it } from 'vitest'
import { makeStatus } from '../test/fakes'
import { VerdictBanner } from './VerdictBanner'

describe('VerdictBanner', () => {
  it('names missing and duplicated keys', () => {
    render(
      <VerdictBanner
        status={makeStatus({
          state: 'finished',
          test_id: 't',
          verdict: { exactly_once: false, expected: 1000, consumed: 999, missing: 2, duplicates: 1, dead_letters: 0 },
        })}
      />,
    )
    const verdict = screen.getByTestId('verdict')
    expect(verdict).toHaveAttribute('data-verdict', 'failed')
    expect(verdict).toHaveAttribute('role', 'status')
    expect(screen.getByTestId('verdict-headline')).toHaveTextContent('2 keys missing, 1 key consumed more than once')
  })

  it('explains an interrupted test still draining', () => {
    render(<VerdictBanner status={makeStatus({ state: 'interrupted', test_id: 't' })} />)
    expect(screen.getByTestId('verdict')).toHaveTextContent('generator restarted')
    expect(screen.getByTestId('verdict')).toHaveAttribute('data-verdict', 'pending')
  })

  it('invites a first test', () => {
    render(<VerdictBanner status={null} />)
    expect(screen.getByTestId('verdict')).toHaveTextContent('start a test')
  })
})
