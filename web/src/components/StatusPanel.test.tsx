import { render, screen } from '@testing-library/react'
import { describe, expect, it } from 'vitest'
import { makeStatus } from '../test/fakes'
import { StatusPanel } from './StatusPanel'

describe('StatusPanel', () => {
  it('names each recent dead letter with its error', () => {
    const status = makeStatus({
      state: 'finished',
      dead_letters: 1,
      recent_dead_letters: [
        { key: 'gen-key:7', test_id: 't-1', claim_id: '12', attempts: 3, error: 'ValueError: no', at: 1 },
      ],
    })
    render(<StatusPanel status={status} load="loaded" connection="open" />)
    const panel = screen.getByTestId('dead-letters')
    expect(panel.textContent).toContain('gen-key:7')
    expect(panel.textContent).toContain('after 3 deliveries')
    expect(panel.textContent).toContain('ValueError: no')
  })

  it('shows no dead-letter list when there are none', () => {
    render(<StatusPanel status={makeStatus()} load="loaded" connection="open" />)
    expect(screen.queryByTestId('dead-letters')).toBeNull()
  })
})
