import { render, screen } from '@testing-library/react'
import { describe, expect, it } from 'vitest'
import { ConsumerBars } from './ConsumerBars'

describe('ConsumerBars', () => {
  it('marks the consumers that listen for expiries', () => {
    render(<ConsumerBars consumers={{ 'c-0': 10, 'c-1': 5, 'c-2': 7 }} listeners={['c-1', 'c-3']} />)
    const badges = screen.getAllByTestId('listener-badge')
    expect(badges).toHaveLength(1)
    expect(badges[0]?.closest('[data-consumer]')?.getAttribute('data-consumer')).toBe('c-1')
    expect(screen.getByTestId('listeners').textContent).toContain('c-3')
  })

  it('names the listeners before any key was taken', () => {
    render(<ConsumerBars consumers={{}} listeners={['c-0', 'c-1']} />)
    expect(screen.getByTestId('listeners').textContent).toContain('c-0, c-1')
  })
})
