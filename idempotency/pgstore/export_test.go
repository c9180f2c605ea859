package pgstore

// TableForTest returns the store's quoted table name.
func (s *Store) TableForTest() string { return s.table }
