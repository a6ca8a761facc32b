"""mobility: journeys that combine local legs with trains, and train bookings for citizens."""
